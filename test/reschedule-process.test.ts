import { access, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCorral } from '../cli/up/corral-cli.js';
import { startLocalFleet, type LocalFleet } from '../cli/up/local-fleet.js';
import type { OperationDetail, OperationListResponse } from '../protocol/operations.js';
import {
  CLI,
  deploy,
  isAlive,
  loggingSpec,
  pidsWithMarker,
  placementOf,
  poll,
  recordedPids,
  servicesJson,
  tempDir,
} from './fleet-fixture.js';

/**
 * Host loss against real `corral` processes: a controller serving with `--reschedule-after 2s`
 * and two workers (hand-started agents). kill -9 one agent; once its host has been offline for
 * the delay its services run on the other host, while the copies on the lost host are left
 * alone (nothing is done to a host that cannot be reached); its agent restarted, the controller
 * sends it its new set and the moved copies stop there. Processes are counted by the marker on
 * their command lines in /proc.
 */
const HEARTBEAT_INTERVAL_MS = 1_000;
const STEP_TIMEOUT_MS = 120_000;
const tag = `resched-${process.pid}`;
const spec = loggingSpec(4, tag);
const marker = (service: string): string => `MARK-${tag}-${service}`;

describe('reschedule after host loss (real processes)', () => {
  let dir: string | undefined;
  let fleet: LocalFleet | undefined;
  let moved: string[] = [];
  const f = (): LocalFleet => {
    if (!fleet) throw new Error('the fleet did not start');
    return fleet;
  };

  beforeAll(async () => {
    dir = await tempDir('resched');
    fleet = await startLocalFleet({
      dir,
      cli: CLI,
      workers: ['rs-1', 'rs-2'].map((name) => ({ name, address: '127.0.0.1' })),
      heartbeatIntervalMs: HEARTBEAT_INTERVAL_MS,
      updater: false,
      forwarder: false,
      serveArgs: ['--reschedule-after', '2s'],
    });
  }, 240_000);

  afterAll(async () => {
    try {
      if (fleet) expect((await fleet.close()).errors).toEqual([]);
      for (const s of spec.services) expect(await pidsWithMarker(marker(s.name))).toEqual([]);
    } finally {
      if (dir) await rm(dir, { recursive: true, force: true });
    }
  }, 180_000);

  it(
    'kill -9 of an agent: past the delay its services run on the other host, the lost copies untouched',
    async () => {
      const res = await deploy(f(), spec);
      expect(res.exitCode).toBe(0);
      const placement = placementOf(res.plan);
      moved = Object.keys(placement).filter((s) => placement[s] === 'rs-2');
      expect(moved.length).toBe(2);
      await poll('every service running', async () => {
        const rows = await servicesJson(f());
        return rows.length === 4 && rows.every((r) => r.observed === 'running') ? true : undefined;
      });
      const victim = f().worker('rs-2');
      const lostPids = await recordedPids(victim);
      expect(victim.agent.signal('SIGKILL')).toBe(true);
      await victim.agent.exited;

      await poll('the moved services running on rs-1', async () => {
        const rows = await servicesJson(f());
        const onSurvivor = rows.filter((r) => r.host === 'rs-1' && r.desired === 'running');
        return onSurvivor.length === 4 && onSurvivor.every((r) => r.observed === 'running')
          ? true
          : undefined;
      });
      // The lost host was not touched: its copies still run (twice in all, until it is back).
      for (const s of moved) {
        expect(await isAlive(lostPids[s] ?? 0)).toBe(true);
        expect((await pidsWithMarker(marker(s))).length).toBe(2);
      }
      const ops = (await f().controller.admin.get<OperationListResponse>('/v1/ops')).operations;
      const resched = ops.find((o) => o.kind === 'reschedule');
      expect(resched).toMatchObject({ actor: 'controller', state: 'succeeded' });
      const detail = await f().controller.admin.get<OperationDetail>(`/v1/ops/${resched?.id ?? ''}`);
      expect(detail.steps.map((s) => [s.host, s.state])).toEqual([['rs-1', 'succeeded']]);
      const lines = detail.log.map((l) => l.message);
      expect(lines).toContain('rs-2 has been offline longer than the reschedule delay; its services move');
      for (const s of moved) expect(lines).toContain(`${s} moves from rs-2 to rs-1`);
    },
    STEP_TIMEOUT_MS,
  );

  it(
    'the agent restarted: the moved copies are stopped on its host and never run twice after',
    async () => {
      const victim = f().worker('rs-2');
      await victim.startAgent();
      await poll('one copy of each moved service', async () => {
        for (const s of moved) if ((await pidsWithMarker(marker(s))).length !== 1) return undefined;
        return true;
      });
      // The one left is the copy on rs-1, and it stays the only one.
      const survivor = await recordedPids(f().worker('rs-1'));
      for (let i = 0; i < 10; i++) {
        for (const s of spec.services) {
          expect(await pidsWithMarker(marker(s.name))).toEqual(
            moved.includes(s.name) ? [survivor[s.name]] : [expect.any(Number)],
          );
        }
        await sleep(300);
      }
      // Its host ran only the moved services: it runs none now (its agent stopped them).
      expect(await recordedPids(victim)).toEqual({});
      const ops = (await f().controller.admin.get<OperationListResponse>('/v1/ops')).operations;
      const heal = ops.find((o) => o.kind === 'heal');
      expect(heal).toMatchObject({ actor: 'controller', state: 'succeeded' });
      const rows = await servicesJson(f());
      expect(rows.filter((r) => r.desired === 'running').map((r) => [r.service, r.host, r.observed])).toEqual(
        spec.services.map((s) => [s.name, 'rs-1', 'running']),
      );
    },
    STEP_TIMEOUT_MS,
  );
});

describe('corral controller serve --reschedule-after', () => {
  it('refuses a value that is neither a duration nor off (exit 2) before it touches any state', async () => {
    const none = join(await tempDir('resched-flag'), 'no-state');
    for (const value of ['soon', '0s', '-5m']) {
      const r = await runCorral(CLI, [
        'controller',
        'serve',
        '--state-dir',
        none,
        '--reschedule-after',
        value,
      ]);
      expect([r.code, r.stderr]).toEqual([2, expect.stringContaining('--reschedule-after')]);
    }
    await expect(access(none)).rejects.toMatchObject({ code: 'ENOENT' });
  });
});

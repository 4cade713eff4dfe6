import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort } from '../cli/up/free-port.js';
import { startLocalController, type LocalController } from '../cli/up/local-controller.js';
import { startLocalWorker, type LocalWorker } from '../cli/up/local-worker.js';
import { runCorral } from '../cli/up/corral-cli.js';
import type { HostDetail } from '../protocol/admin-hosts.js';
import { CLOCK_OFFSET_WARN_MS, type HostView } from '../protocol/host.js';
import { CLI, poll, tempDir } from './fleet-fixture.js';

/**
 * libfaketime (Debian package `faketime`, which `.ci/run` installs), preloaded the way
 * `faketime -f OFFSET` does it but through `env`, which execs: the daemon keeps its pid, so
 * the agent's lock file names the process that was started (`faketime` itself forks).
 */
const LIBFAKETIME = ['/usr/lib/x86_64-linux-gnu', '/usr/lib/aarch64-linux-gnu', '/usr/lib']
  .map((d) => join(d, 'faketime', 'libfaketimeMT.so.1'))
  .find((f) => existsSync(f));
const fakedNow = (offset: string): string =>
  spawnSync('env', [`LD_PRELOAD=${LIBFAKETIME ?? ''}`, `FAKETIME=${offset}`, 'date', '-u', '+%s'], {
    encoding: 'utf8',
  }).stdout.trim();
const faketime =
  LIBFAKETIME !== undefined && Math.abs(Number(fakedNow('-1h')) + 3600 - Date.now() / 1000) < 60;
if (!faketime)
  console.warn('clock-skew tests skipped: libfaketime is not installed (apt-get install faketime)');

const HEARTBEAT_MS = 1000;
/** Estimates are within a few seconds on loopback; this is far inside the offsets tested. */
const SLACK_MS = 20_000;

/** Workers whose `corral` daemons run under a faked clock (as `faketime -f OFFSET`). */
const SKEWED = [
  { name: 'behind-10m', offset: '-10m', expectMs: -10 * 60_000 },
  { name: 'behind-50m', offset: '-50m', expectMs: -50 * 60_000 },
  { name: 'ahead-50m', offset: '+50m', expectMs: 50 * 60_000 },
] as const;

describe.skipIf(!faketime)('agents with skewed clocks (real processes under faketime)', () => {
  let dir: string;
  let controller: LocalController;
  const workers: LocalWorker[] = [];

  beforeAll(async () => {
    dir = await tempDir('clock');
    controller = await startLocalController({
      cli: CLI,
      stateDir: join(dir, 'controller'),
      logFile: join(dir, 'controller.log'),
      heartbeatIntervalMs: HEARTBEAT_MS,
    });
    const plans = [
      ...SKEWED.map((s) => ({
        name: s.name,
        prefix: ['env', `LD_PRELOAD=${LIBFAKETIME ?? ''}`, `FAKETIME=${s.offset}`],
      })),
      { name: 'on-time', prefix: undefined },
    ];
    workers.push(
      ...(await Promise.all(
        plans.map(async (p) =>
          startLocalWorker(
            {
              cli: CLI,
              controller,
              stateDir: join(dir, p.name),
              heartbeatIntervalMs: HEARTBEAT_MS,
              updater: false,
            },
            {
              name: p.name,
              address: '127.0.0.1',
              agentPort: await freePort(),
              updaterPort: await freePort(),
              ...(p.prefix ? { prefix: p.prefix } : {}),
            },
          ),
        ),
      )),
    );
  }, 180_000);

  afterAll(async () => {
    await Promise.all(workers.map((w) => w.stopDaemons()));
    await controller?.daemon.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  }, 60_000);

  /** Polled through the admin API; what the user sees is then read through the CLI. */
  const onlineWithClock = (name: string): Promise<HostDetail> =>
    poll(`${name} online with a clock reading`, async () => {
      const d = await controller.admin.get<HostDetail>(`/v1/hosts/${name}`);
      return d.host.status === 'online' && d.host.clock ? d : undefined;
    });

  const hostJson = async (name: string): Promise<HostDetail> => {
    const r = await runCorral(CLI, ['controller', 'host', name, '--json'], { env: controller.env });
    if (r.code !== 0) throw new Error(`controller host ${name} exited ${r.code}: ${r.stderr}`);
    return JSON.parse(r.stdout) as HostDetail;
  };

  it('every skewed agent comes online, and `controller host` shows its offset with a warning', async () => {
    for (const s of SKEWED) {
      await onlineWithClock(s.name);
      const detail = await hostJson(s.name);
      expect(detail.host.status).toBe('online');
      const clock = detail.host.clock;
      expect(clock, s.name).toMatchObject({ warning: true, warnAfterMs: CLOCK_OFFSET_WARN_MS });
      expect(Math.abs((clock?.offsetMs ?? 0) - s.expectMs), `${s.name}: ${clock?.offsetMs}`).toBeLessThan(
        SLACK_MS,
      );

      const text = await runCorral(CLI, ['controller', 'host', s.name], { env: controller.env });
      expect(text.code).toBe(0);
      const line = text.stdout.split('\n').find((l) => l.startsWith('clock offset'));
      expect(line, text.stdout).toMatch(
        s.expectMs < 0
          ? /clock offset\s+-\d+m \d+s \(agent behind the controller, measured .*\)\s+WARNING: more than 1m 0s off/
          : /clock offset\s+\+\d+m \d+s \(agent ahead of the controller, measured .*\)\s+WARNING: more than 1m 0s off/,
      );
      expect(text.stderr).toContain(`warning: ${s.name}: clock`);
      console.log(`corral controller host ${s.name}:\n${text.stdout}${text.stderr}`);
    }
  }, 240_000);

  it('an agent on time is shown without a warning, and the list warns only about the skewed ones', async () => {
    await onlineWithClock('on-time');
    const detail = await hostJson('on-time');
    expect(detail.host.clock?.warning).toBe(false);
    expect(Math.abs(detail.host.clock?.offsetMs ?? Infinity)).toBeLessThan(CLOCK_OFFSET_WARN_MS);

    const list = await runCorral(CLI, ['controller', 'hosts', '--json'], { env: controller.env });
    const hosts = JSON.parse(list.stdout) as HostView[];
    expect(Object.fromEntries(hosts.map((h) => [h.name, [h.status, h.clock?.warning]]))).toEqual({
      'ahead-50m': ['online', true],
      'behind-10m': ['online', true],
      'behind-50m': ['online', true],
      'on-time': ['online', false],
    });
    const table = await runCorral(CLI, ['controller', 'hosts'], { env: controller.env });
    const warned = table.stderr
      .split('\n')
      .filter((l) => l.startsWith('warning: '))
      .map((l) => l.split(':')[1]?.trim())
      .sort();
    expect(warned).toEqual(['ahead-50m', 'behind-10m', 'behind-50m']);
  }, 120_000);
});

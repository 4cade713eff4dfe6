/**
 * Staged updates end to end: an in-process controller with three enrolled hosts, each with a
 * real `corral updater serve` process updating the stand-in agent of test/updater-harness.ts.
 * A canary update with a release that fails its health check halts after the canary host,
 * the other hosts untouched; `ops resume` continues with them; `ops cancel` ends it.
 */
import { mkdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { writeBundle } from '../pki/index.js';
import type { AdminReleasesResponse, AdminUpdateResponse } from '../protocol/admin-update.js';
import type { AuditEntry } from '../protocol/admin-audit.js';
import type { OperationDetail, OperationView } from '../protocol/operations.js';
import { corral, startController, type TestController } from './controller-fixture.js';
import { freePort } from './rsyslog-fixtures.js';
import {
  buildRelease,
  spawnUpdater,
  tempDir,
  killRecordedAgent,
  type BuiltRelease,
  type UpdaterProcess,
  type Worker,
} from './updater-harness.js';

let t: TestController;
let dir: string;
let env: Record<string, string>;
const workers: Worker[] = [];
const updaters: UpdaterProcess[] = [];
let good: BuiltRelease;
let bad: BuiltRelease;
let next: BuiltRelease;

async function enrollWorker(name: string): Promise<Worker> {
  const updaterPort = await freePort();
  const enrolled = await t.enroll(name, { agentPort: await freePort(), updaterPort });
  const stateDir = join(dir, name, 'state');
  await mkdir(stateDir, { recursive: true, mode: 0o700 });
  await writeBundle(join(stateDir, 'bundle'), {
    caPem: enrolled.caPem,
    manifest: enrolled.manifest,
    identities: { updater: { certPem: enrolled.updater.certPem, keyPem: enrolled.updater.keyPem } },
  });
  const worker = {
    name,
    stateDir,
    root: join(dir, name, 'root'),
    updaterFingerprint: enrolled.updater.fingerprint,
  };
  updaters.push(await spawnUpdater(worker, { listen: `127.0.0.1:${updaterPort}` }));
  return worker;
}

const detail = async (id: string): Promise<OperationDetail> =>
  (await t.admin<OperationDetail>('GET', `/v1/ops/${id}`)).body;
const stepsOf = (d: OperationDetail): string[] => d.steps.map((s) => `${s.host}:${s.state}`);

/** Each host's history as `version:outcome`. */
async function histories(): Promise<Record<string, string[]>> {
  const { hosts } = (await t.admin<AdminReleasesResponse>('GET', '/v1/releases')).body;
  return Object.fromEntries(hosts.map((h) => [h.host, h.history.map((e) => `${e.version}:${e.outcome}`)]));
}

beforeAll(async () => {
  t = await startController();
  dir = await tempDir('rollout-update');
  env = { CORRAL_URL: t.endpoints.admin, CORRAL_TOKEN: t.adminToken };
  good = await buildRelease(dir, '1.0.0', 'good');
  bad = await buildRelease(dir, '2.0.0', 'crash');
  next = await buildRelease(dir, '1.1.0', 'good');
  for (const name of ['w-1', 'w-2', 'w-3']) workers.push(await enrollWorker(name));
}, 120_000);

afterAll(async () => {
  await Promise.allSettled(updaters.map((u) => u.stop()));
  for (const w of workers) await killRecordedAgent(w);
  await t?.close();
  if (dir) await rm(dir, { recursive: true, force: true });
});

describe('staged update', () => {
  let halted: string;

  it('by default an update goes in batches of a quarter of the hosts, one after another', async () => {
    const res = await corral(['controller', 'update', '--release', good.file, '--all', '--json'], env);
    expect(res.stderr).toBe('');
    expect(res.code).toBe(0);
    const body = JSON.parse(res.stdout) as AdminUpdateResponse;
    expect(body.state).toBe('succeeded');
    const d = await detail(body.operationId ?? '');
    const batches = d.log.filter((l) => l.message.startsWith('batch: ')).map((l) => l.message);
    expect(batches).toEqual(['batch: w-1', 'batch: w-2', 'batch: w-3']);
    expect(d.log.map((l) => l.message)).toContain(
      'rollout: at most 1 hosts at once; halts at the first failed host',
    );
  }, 180_000);

  it('a canary update with a bad release halts after the canary host, the rest untouched', async () => {
    const res = await corral(
      ['controller', 'update', '--release', bad.file, '--all', '--canary', '1', '--canary-wait', '1s'],
      env,
    );
    expect(res.code).toBe(1);
    expect(res.stdout).toMatch(/w-1\s+rolled-back\s+1\.0\.0/);
    expect(res.stdout).toMatch(/w-2\s+untouched/);
    expect(res.stdout).toMatch(/w-3\s+untouched/);
    expect(res.stderr).toMatch(/halted at w-1: rolled-back/);
    expect(res.stderr).toContain('2 hosts untouched');
    const id = /ops resume ([0-9a-f-]+)/.exec(res.stderr)?.[1];
    expect(id).toBeDefined();
    halted = id ?? '';
    const d = await detail(halted);
    expect(d.operation.state).toBe('halted');
    expect(d.operation.reason).toMatch(/^halted at w-1: rolled-back/);
    expect(stepsOf(d)).toEqual(['w-1:failed', 'w-2:pending', 'w-3:pending']);
    const h = await histories();
    expect(h['w-1']).toContain('2.0.0:rolled-back');
    expect(h['w-2']?.some((e) => e.startsWith('2.0.0'))).toBe(false);
    expect(h['w-3']?.some((e) => e.startsWith('2.0.0'))).toBe(false);
    expect(
      (await t.admin<AdminReleasesResponse>('GET', '/v1/releases')).body.hosts.map((x) => x.current),
    ).toEqual(['1.0.0', '1.0.0', '1.0.0']);
    const list = await corral(['controller', 'ops', '--limit', '1'], env);
    expect(list.stdout).toMatch(/update\s+halted/);
  }, 180_000);

  it('ops resume continues with the untouched hosts, as the same operation (halting again at the next failure)', async () => {
    const res = await corral(['controller', 'ops', 'resume', halted], env);
    expect(res.code).toBe(1);
    expect(res.stderr).toContain('[w-2] rolled-back');
    expect(res.stderr).toMatch(/operation \S+ halted: halted at w-2/);
    const d = await detail(halted);
    expect(stepsOf(d)).toEqual(['w-1:failed', 'w-2:failed', 'w-3:pending']);
    expect(d.log.map((l) => l.message)).toContain('resumed by admin: 2 hosts left');
    const h = await histories();
    expect(h['w-2']).toContain('2.0.0:rolled-back');
    expect(h['w-3']?.some((e) => e.startsWith('2.0.0'))).toBe(false);
  }, 180_000);

  it('ops cancel ends it: the untouched host skipped and left as it was; it cannot be resumed after', async () => {
    const res = await corral(['controller', 'ops', 'cancel', halted, '--json'], env);
    expect(res.code).toBe(0);
    expect((JSON.parse(res.stdout) as OperationView).state).toBe('cancelled');
    const d = await detail(halted);
    expect(stepsOf(d)).toEqual(['w-1:failed', 'w-2:failed', 'w-3:skipped']);
    expect((await histories())['w-3']?.some((e) => e.startsWith('2.0.0'))).toBe(false);
    const again = await t.admin('POST', `/v1/ops/${halted}/resume`, {});
    expect(again.status).toBe(409);
    const audit = await t.admin<{ entries: AuditEntry[] }>('GET', '/v1/audit?limit=50');
    const actions = audit.body.entries.filter((e) => e.target === halted).map((e) => e.action);
    expect(actions).toEqual(expect.arrayContaining(['resume', 'cancel']));
  }, 60_000);

  it('resume and cancel refuse what is not a halted rollout', async () => {
    const done = (await t.admin<{ operations: OperationView[] }>('GET', '/v1/ops')).body.operations.find(
      (o) => o.state === 'succeeded',
    );
    expect((await t.admin('POST', `/v1/ops/${done?.id ?? ''}/cancel`, {})).status).toBe(409);
    expect((await t.admin('POST', '/v1/ops/no-such-op/resume', {})).status).toBe(404);
    const cli = await corral(['controller', 'ops', 'resume', 'no-such-op'], env);
    expect(cli.code).not.toBe(0);
  }, 60_000);

  it('a good release passes its canary wait and goes out to the rest', async () => {
    const res = await corral(
      [
        'controller',
        'update',
        '--release',
        next.file,
        '--all',
        '--canary',
        '1',
        '--canary-wait',
        '1s',
        '--max-parallel',
        '2',
        '--json',
      ],
      env,
    );
    expect(res.code).toBe(0);
    const body = JSON.parse(res.stdout) as AdminUpdateResponse;
    expect(body.state).toBe('succeeded');
    expect(body.hosts.map((h) => `${h.host}:${h.outcome}`)).toEqual([
      'w-1:updated',
      'w-2:updated',
      'w-3:updated',
    ]);
    const messages = (await detail(body.operationId ?? '')).log.map((l) => l.message);
    expect(messages).toEqual(
      expect.arrayContaining([
        'canary batch: w-1',
        'waiting 1 s for the canaries (w-1) to stay healthy',
        'batch: w-2, w-3',
      ]),
    );
  }, 180_000);
});

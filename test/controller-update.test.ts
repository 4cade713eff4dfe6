/**
 * `corral controller update` / `releases` end to end: an in-process controller that enrolled two
 * hosts through its own admin API (so the updater pins are real), and two real `corral updater
 * serve` processes running from those hosts' bundles, updating the stand-in agent of
 * test/updater-harness.ts.
 */
import { createReadStream } from 'node:fs';
import { mkdir, readdir, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { writeBundle } from '../pki/index.js';
import type { AdminReleasesResponse, AdminUpdateResponse } from '../protocol/admin-update.js';
import type { AuditEntry } from '../protocol/admin-audit.js';
import type { OperationDetail } from '../protocol/operations.js';
import type { EventsPage, FleetEvent } from '../protocol/fleet-events.js';
import { corral, startController, type TestController } from './controller-fixture.js';
import { freePort } from './rsyslog-fixtures.js';
import {
  buildRelease,
  CRASH_LATER_MS,
  spawnUpdater,
  tempDir,
  killRecordedAgent,
  type BuiltRelease,
  type UpdaterProcess,
  type Worker,
} from './updater-harness.js';

let t: TestController;
let dir: string;
const workers: Worker[] = [];
const updaters: UpdaterProcess[] = [];
let good: BuiltRelease;
let bad: BuiltRelease;
let next: BuiltRelease;

async function enrollWorker(name: string, extraArgs: string[] = []): Promise<Worker> {
  const updaterPort = await freePort();
  const enrolled = await t.enroll(name, { agentPort: await freePort(), updaterPort });
  const wdir = join(dir, name);
  const stateDir = join(wdir, 'state');
  await mkdir(stateDir, { recursive: true, mode: 0o700 });
  await writeBundle(join(stateDir, 'bundle'), {
    caPem: enrolled.caPem,
    manifest: enrolled.manifest,
    identities: { updater: { certPem: enrolled.updater.certPem, keyPem: enrolled.updater.keyPem } },
  });
  const worker = {
    name,
    stateDir,
    root: join(wdir, 'root'),
    updaterFingerprint: enrolled.updater.fingerprint,
  };
  updaters.push(await spawnUpdater(worker, { listen: `127.0.0.1:${updaterPort}`, extraArgs }));
  return worker;
}

/** Release and operation fleet events of one operation, as `kind host data…`. */
async function eventsOf(operationId: string | null): Promise<FleetEvent[]> {
  const page = await t.admin<EventsPage>('GET', '/v1/events?limit=1000');
  return page.body.events.filter((e) => e.operationId === operationId);
}

async function upload<T>(release: BuiltRelease, query: string): Promise<{ status: number; body: T }> {
  const res = await request(`${t.endpoints.admin}/v1/update?${query}`, {
    method: 'POST',
    headers: {
      authorization: `Bearer ${t.adminToken}`,
      'content-type': 'application/octet-stream',
      'content-length': String(release.bytes),
    },
    body: createReadStream(release.file),
    headersTimeout: 120_000,
    bodyTimeout: 120_000,
  });
  return { status: res.statusCode, body: (await res.body.json()) as T };
}

beforeAll(async () => {
  t = await startController();
  dir = await tempDir('ctl-update');
  good = await buildRelease(dir, '1.0.0', 'good');
  bad = await buildRelease(dir, '2.0.0', 'crash');
  next = await buildRelease(dir, '1.1.0', 'good');
  workers.push(await enrollWorker('w-1'), await enrollWorker('w-2'));
}, 120_000);

afterAll(async () => {
  await Promise.allSettled(updaters.map((u) => u.stop()));
  for (const w of workers) await killRecordedAgent(w);
  await t?.close();
  if (dir) await rm(dir, { recursive: true, force: true });
});

describe('controller update', () => {
  it('pushes a good release to every host as an operation with an audit entry', async () => {
    const res = await upload<AdminUpdateResponse>(good, 'all=true');
    expect(res.status).toBe(200);
    expect(res.body.ok).toBe(true);
    expect(res.body.version).toBe('1.0.0');
    expect(res.body.sha256).toBe(good.sha256);
    expect(res.body.hosts.map((h) => [h.host, h.outcome, h.version])).toEqual([
      ['w-1', 'updated', '1.0.0'],
      ['w-2', 'updated', '1.0.0'],
    ]);
    const op = await t.admin<OperationDetail>('GET', `/v1/ops/${res.body.operationId ?? ''}`);
    expect(op.body.operation).toMatchObject({ kind: 'update', state: 'succeeded', target: 'release 1.0.0' });
    expect(op.body.steps.map((s) => [s.host, s.state])).toEqual([
      ['w-1', 'succeeded'],
      ['w-2', 'succeeded'],
    ]);
    expect(op.body.log.some((l) => l.host === 'w-1' && l.message.startsWith('updated'))).toBe(true);
    const audit = await t.admin<{ entries: AuditEntry[] }>('GET', '/v1/audit');
    const entry = audit.body.entries.find((e) => e.action === 'update' && e.target === '1.0.0');
    expect(entry?.details).toMatchObject({ operationId: res.body.operationId, hosts: ['w-1', 'w-2'] });
    expect(audit.body.entries.some((e) => e.action === 'update-finished' && e.target === '1.0.0')).toBe(true);
    // Fleet events: the operation's start and end, and each host's new release.
    const events = await eventsOf(res.body.operationId);
    expect(events.map((e) => [e.kind, e.host?.name ?? null, e.data.version ?? e.data.outcome])).toEqual(
      expect.arrayContaining([
        ['operation.started', null, undefined],
        ['release.updated', 'w-1', '1.0.0'],
        ['release.updated', 'w-2', '1.0.0'],
        ['operation.finished', null, 'succeeded'],
      ]),
    );
    expect(events).toHaveLength(4);
    expect(events[0]?.kind).toBe('operation.started');
    expect(events[3]?.kind).toBe('operation.finished');
    // The upload's temp file is gone.
    const uploads = join(tmpdir(), `corral-uploads-${process.pid}`);
    const left = await stat(uploads).then(
      () => readdir(uploads),
      () => [],
    );
    expect(left).toEqual([]);
  }, 120_000);

  it('reports a release that fails its health check as rolled back, and not ok', async () => {
    const res = await upload<AdminUpdateResponse>(bad, 'hosts=w-1');
    expect(res.status).toBe(200);
    expect(res.body.ok).toBe(false);
    expect(res.body.hosts).toHaveLength(1);
    expect(res.body.hosts[0]).toMatchObject({ host: 'w-1', outcome: 'rolled-back', version: '1.0.0' });
    const op = await t.admin<OperationDetail>('GET', `/v1/ops/${res.body.operationId ?? ''}`);
    expect(op.body.operation.state).toBe('failed');
    expect(op.body.steps[0]?.state).toBe('failed');
    const events = await eventsOf(res.body.operationId);
    expect(events.map((e) => e.kind)).toEqual([
      'operation.started',
      'release.rolled_back',
      'operation.finished',
    ]);
    expect(events[1]).toMatchObject({ host: { name: 'w-1' }, data: { version: '2.0.0', current: '1.0.0' } });
    expect(events[2]?.data).toMatchObject({ kind: 'update', outcome: 'failed', failedHosts: 1 });
  }, 120_000);

  it('refuses unknown hosts, bodies that are not releases, and a wrong digest', async () => {
    const unknown = await upload<{ error: { code: string; message: string } }>(good, 'hosts=w-1,nope');
    expect(unknown.status).toBe(404);
    expect(unknown.body.error.message).toContain('nope');
    const neither = await upload<{ error: { code: string } }>(good, 'force=true');
    expect(neither.status).toBe(400);
    const digest = await upload<{ error: { code: string } }>(good, `hosts=w-1&sha256=${'0'.repeat(64)}`);
    expect(digest.body.error.code).toBe('CORRAL_ERR_DIGEST_MISMATCH');
    const notTar = await request(`${t.endpoints.admin}/v1/update?hosts=w-1`, {
      method: 'POST',
      headers: { authorization: `Bearer ${t.adminToken}`, 'content-type': 'application/octet-stream' },
      body: 'not a tarball',
    });
    expect(notTar.statusCode).toBe(400);
    expect(((await notTar.body.json()) as { error: { code: string } }).error.code).toBe(
      'CORRAL_ERR_VALIDATION',
    );
  }, 60_000);

  it('dry run asks the updaters and changes nothing', async () => {
    const res = await upload<AdminUpdateResponse>(next, 'all=true&dryRun=true');
    expect(res.status).toBe(200);
    expect(res.body).toMatchObject({ dryRun: true, operationId: null, ok: true });
    expect(res.body.hosts.map((h) => [h.host, h.outcome, h.version])).toEqual([
      ['w-1', 'dry-run', '1.0.0'],
      ['w-2', 'dry-run', '1.0.0'],
    ]);
  }, 60_000);

  it('releases shows each host current release and history', async () => {
    const res = await t.admin<AdminReleasesResponse>('GET', '/v1/releases');
    expect(res.status).toBe(200);
    const byHost = Object.fromEntries(res.body.hosts.map((h) => [h.host, h]));
    expect(byHost['w-1']).toMatchObject({ current: '1.0.0', error: null });
    expect(byHost['w-2']).toMatchObject({ current: '1.0.0', error: null });
    expect(byHost['w-1']?.history.map((e) => `${e.version}:${e.outcome}`)).toEqual(
      expect.arrayContaining(['1.0.0:updated', '2.0.0:rolled-back']),
    );
    const one = await t.admin<AdminReleasesResponse>('GET', '/v1/releases?host=w-2');
    expect(one.body.hosts.map((h) => h.host)).toEqual(['w-2']);
    const missing = await t.admin('GET', '/v1/releases?host=nope');
    expect(missing.status).toBe(404);
  }, 60_000);

  it('the CLI pushes with a table and exits non-zero when a host is not updated', async () => {
    const env = { CORRAL_URL: t.endpoints.admin, CORRAL_TOKEN: t.adminToken };
    const ok = await corral(['controller', 'update', '--release', next.file, '--host', 'w-2'], env);
    expect(ok.stderr).not.toContain('Error');
    expect(ok.code).toBe(0);
    expect(ok.stdout).toMatch(/HOST\s+OUTCOME\s+VERSION\s+REASON/);
    expect(ok.stdout).toMatch(/w-2\s+updated\s+1\.1\.0/);
    expect(ok.stderr).toContain('[w-2] updated');

    const failed = await corral(
      ['controller', 'update', '--release', bad.file, '--host', 'w-1', '--json'],
      env,
    );
    expect(failed.code).toBe(1);
    expect((JSON.parse(failed.stdout) as AdminUpdateResponse).hosts[0]?.outcome).toBe('failed');

    const rel = await corral(['controller', 'releases', '--json'], env);
    expect(rel.code).toBe(0);
    const hosts = JSON.parse(rel.stdout) as AdminReleasesResponse['hosts'];
    expect(hosts.map((h) => [h.host, h.current])).toEqual([
      ['w-1', '1.0.0'],
      ['w-2', '1.1.0'],
    ]);
    const table = await corral(['controller', 'releases', '--host', 'w-2'], env);
    expect(table.stdout).toMatch(/w-2\s+1\.1\.0/);
  }, 120_000);

  it('re-pushing the active version is updated (already active), exit 0, ten times in a row to every host', async () => {
    const env = { CORRAL_URL: t.endpoints.admin, CORRAL_TOKEN: t.adminToken };
    const first = await corral(['controller', 'update', '--release', next.file, '--all'], env);
    expect(first.code).toBe(0);
    expect(first.stdout).toMatch(/w-1\s+updated\s+1\.1\.0\s+-/);
    expect(first.stdout).toMatch(/w-2\s+updated\s+1\.1\.0\s+already active/);
    const seen: string[] = [];
    for (let round = 0; round < 10; round++) {
      const again = await corral(['controller', 'update', '--release', next.file, '--all', '--json'], env);
      const res = JSON.parse(again.stdout) as AdminUpdateResponse;
      seen.push(
        `exit ${again.code}: ${res.hosts.map((h) => `${h.host} ${h.outcome} (${h.reason ?? ''})`).join(', ')}`,
      );
    }
    expect(seen).toEqual(
      Array.from({ length: 10 }, () => 'exit 0: w-1 updated (already active), w-2 updated (already active)'),
    );
    // The table shows the same.
    const table = await corral(['controller', 'update', '--release', next.file, '--host', 'w-1,w-2'], env);
    expect(table.code).toBe(0);
    expect(table.stdout).toMatch(/w-1\s+updated\s+1\.1\.0\s+already active/);
  }, 300_000);

  it(`reports rolled-back for a release whose agent passes health and crashes ${CRASH_LATER_MS / 1000} s later`, async () => {
    const env = { CORRAL_URL: t.endpoints.admin, CORRAL_TOKEN: t.adminToken };
    workers.push(await enrollWorker('w-3', ['--watch', '10s']));
    const crashLater = await buildRelease(dir, '3.0.0', 'crash-later');
    expect((await corral(['controller', 'update', '--release', next.file, '--host', 'w-3'], env)).code).toBe(
      0,
    );
    const res = await corral(['controller', 'update', '--release', crashLater.file, '--host', 'w-3'], env);
    expect(res.code).toBe(1);
    expect(res.stdout).toMatch(
      /w-3\s+rolled-back\s+1\.1\.0\s+release 3\.0\.0: agent exited with code 4, \d+\.\d s after it reported healthy \(watch 10\.0 s\)/,
    );
    expect(res.stderr).toContain('1 of 1 hosts did not end on 3.0.0');
    const rel = await corral(['controller', 'releases', '--host', 'w-3', '--json'], env);
    const [host] = JSON.parse(rel.stdout) as AdminReleasesResponse['hosts'];
    expect(host).toMatchObject({ current: '1.1.0', busy: false });
    expect(host?.history.at(-1)).toMatchObject({ version: '3.0.0', outcome: 'rolled-back' });
  }, 180_000);
});

/**
 * `corral controller rollback HOST` end to end: an in-process controller that enrolled a host
 * through its own admin API (so the updater pin is real), a real `corral updater serve` on two
 * pushed releases, and the CLI rolling it back to the first one as an operation with an audit entry.
 */
import { createReadStream } from 'node:fs';
import { mkdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { writeBundle } from '../pki/index.js';
import type {
  AdminReleasesResponse,
  AdminRollbackResponse,
  AdminUpdateResponse,
} from '../protocol/admin-update.js';
import type { AuditEntry } from '../protocol/admin-audit.js';
import type { OperationDetail } from '../protocol/operations.js';
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
let worker: Worker | undefined;
let updater: UpdaterProcess | undefined;

async function upload(release: BuiltRelease): Promise<AdminUpdateResponse> {
  const res = await request(`${t.endpoints.admin}/v1/update?hosts=w-1`, {
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
  expect(res.statusCode).toBe(200);
  return (await res.body.json()) as AdminUpdateResponse;
}

beforeAll(async () => {
  t = await startController();
  dir = await tempDir('ctl-rollback');
  const first = await buildRelease(dir, '1.0.0', 'good');
  const second = await buildRelease(dir, '1.1.0', 'good');
  const updaterPort = await freePort();
  const enrolled = await t.enroll('w-1', { agentPort: await freePort(), updaterPort });
  const stateDir = join(dir, 'w-1', 'state');
  await mkdir(stateDir, { recursive: true, mode: 0o700 });
  await writeBundle(join(stateDir, 'bundle'), {
    caPem: enrolled.caPem,
    manifest: enrolled.manifest,
    identities: { updater: { certPem: enrolled.updater.certPem, keyPem: enrolled.updater.keyPem } },
  });
  worker = {
    name: 'w-1',
    stateDir,
    root: join(dir, 'w-1', 'root'),
    updaterFingerprint: enrolled.updater.fingerprint,
  };
  updater = await spawnUpdater(worker, { listen: `127.0.0.1:${updaterPort}` });
  expect((await upload(first)).ok).toBe(true);
  expect((await upload(second)).ok).toBe(true);
}, 120_000);

afterAll(async () => {
  await updater?.stop();
  if (worker) await killRecordedAgent(worker);
  await t?.close();
  if (dir) await rm(dir, { recursive: true, force: true });
});

describe('controller rollback', () => {
  it('the CLI rolls a host back to its previous release, as an operation with an audit entry', async () => {
    const env = { CORRAL_URL: t.endpoints.admin, CORRAL_TOKEN: t.adminToken };
    const out = await corral(['controller', 'rollback', 'w-1', '--json'], env);
    expect(out.stderr).toBe('');
    expect(out.code).toBe(0);
    const res = JSON.parse(out.stdout) as AdminRollbackResponse;
    expect(res).toMatchObject({ host: 'w-1', outcome: 'rolled-back', current: '1.0.0', from: '1.1.0' });

    const rel = await t.admin<AdminReleasesResponse>('GET', '/v1/releases?host=w-1');
    expect(rel.body.hosts[0]?.current).toBe('1.0.0');
    const op = await t.admin<OperationDetail>('GET', `/v1/ops/${res.operationId}`);
    expect(op.body.operation).toMatchObject({
      kind: 'update',
      state: 'succeeded',
      target: 'rollback host w-1',
    });
    expect(op.body.steps.map((s) => [s.host, s.state, s.detail])).toEqual([
      ['w-1', 'succeeded', 'rolled back to 1.0.0'],
    ]);
    const audit = await t.admin<{ entries: AuditEntry[] }>('GET', '/v1/audit');
    const entry = audit.body.entries.find((e) => e.action === 'rollback' && e.target === 'w-1');
    expect(entry?.details).toMatchObject({ operationId: res.operationId });

    // The table form names the host and where it is now.
    const table = await corral(['controller', 'rollback', 'w-1'], env);
    expect(table.code).toBe(0);
    expect(table.stdout).toMatch(/HOST\s+OUTCOME\s+CURRENT\s+FROM/);
    expect(table.stdout).toMatch(/w-1\s+rolled-back\s+1\.1\.0\s+1\.0\.0/);
  }, 120_000);

  it('an unknown host is a 404 and the CLI exits non-zero', async () => {
    const res = await t.admin('POST', '/v1/hosts/nope/rollback', {});
    expect(res.status).toBe(404);
    expect(res.body).toMatchObject({ error: { code: 'CORRAL_ERR_NOT_FOUND' } });
    const env = { CORRAL_URL: t.endpoints.admin, CORRAL_TOKEN: t.adminToken };
    const out = await corral(['controller', 'rollback', 'nope'], env);
    expect(out.code).not.toBe(0);
    expect(out.stderr).toContain('CORRAL_ERR_NOT_FOUND');
  });

  it('an updater that cannot be reached is a 503 with the reason, and the operation records it', async () => {
    await updater?.stop();
    updater = undefined;
    const res = await t.admin<{ error: { code: string; message: string } }>(
      'POST',
      '/v1/hosts/w-1/rollback',
      {},
    );
    expect(res.status).toBe(503);
    expect(res.body.error.code).toBe('CORRAL_ERR_UNAVAILABLE');
    expect(res.body.error.message).toContain('w-1: its updater could not roll back');
    const ops = await t.admin<{ operations: { kind: string; state: string; target: string }[] }>(
      'GET',
      '/v1/ops',
    );
    expect(ops.body.operations.some((o) => o.target === 'rollback host w-1' && o.state === 'failed')).toBe(
      true,
    );
  });
});

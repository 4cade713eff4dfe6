/**
 * `corral controller rollback HOST` end to end: an in-process controller that enrolled a host
 * through its own admin API (so the updater pin is real), a real `corral updater serve` on two
 * pushed releases, and the CLI rolling it back to the first one as an operation with an audit entry.
 * Then the same with `update: 1` approvals (the rollback waits for a second operator, in the CLI
 * and on the dashboard's releases tab), and an updater holding one release only (nothing to
 * roll back to).
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
import type { ApprovalPending, ApprovalView } from '../protocol/approvals.js';
import type { OperatorCreateResponse } from '../protocol/operators.js';
import type { OperationDetail } from '../protocol/operations.js';
import type { ControllerOptions } from '../controller/controller.js';
import { hasChromium, launchChromium, logIn } from './dashboard-fixture.js';
import { ROOT } from './fleet-fixture.js';
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

/** A controller with host w-1, whose real updater was pushed `releases` in order. */
interface Fleet {
  readonly t: TestController;
  readonly dir: string;
  readonly worker: Worker;
  updater: UpdaterProcess | undefined;
}

/**
 * Pushes `release` to w-1; with `approver` (update approvals on) the push waits and the
 * approver's approval runs it.
 */
async function upload(f: Fleet, release: BuiltRelease, approver?: string): Promise<AdminUpdateResponse> {
  const res = await request(`${f.t.endpoints.admin}/v1/update?hosts=w-1`, {
    method: 'POST',
    headers: {
      authorization: `Bearer ${f.t.adminToken}`,
      'content-type': 'application/octet-stream',
      'content-length': String(release.bytes),
    },
    body: createReadStream(release.file),
    headersTimeout: 120_000,
    bodyTimeout: 120_000,
  });
  if (approver === undefined) {
    expect(res.statusCode).toBe(200);
    return (await res.body.json()) as AdminUpdateResponse;
  }
  expect(res.statusCode).toBe(202);
  const pending = (await res.body.json()) as ApprovalPending;
  const approved = await f.t.admin<ApprovalView>(
    'POST',
    `/v1/approvals/${pending.approval.id}/approve`,
    {},
    approver,
  );
  expect(approved.body.state, JSON.stringify(approved.body)).toBe('completed');
  return approved.body.result as AdminUpdateResponse;
}

async function operator(t: TestController, name: string, scopes: string[]): Promise<string> {
  const res = await t.admin<OperatorCreateResponse>('POST', '/v1/operators', { name, scopes });
  expect(res.status, JSON.stringify(res.body)).toBe(200);
  return res.body.token ?? '';
}

async function startFleet(
  name: string,
  versions: readonly string[],
  o: {
    readonly approvals?: ControllerOptions['approvals'];
    /** Serve the built dashboard (dist/ui). */
    readonly dashboard?: boolean;
    /** Makes the operator who approves the pushes (update approvals on), given the controller. */
    readonly approver?: (t: TestController) => Promise<string>;
  } = {},
): Promise<Fleet> {
  const t = await startController({
    approvals: o.approvals,
    ...(o.dashboard === true && { dashboardDir: join(ROOT, 'dist', 'ui') }),
  });
  const dir = await tempDir(name);
  const releases = [];
  for (const v of versions) releases.push(await buildRelease(dir, v, 'good'));
  const updaterPort = await freePort();
  const enrolled = await t.enroll('w-1', { agentPort: await freePort(), updaterPort });
  const stateDir = join(dir, 'w-1', 'state');
  await mkdir(stateDir, { recursive: true, mode: 0o700 });
  await writeBundle(join(stateDir, 'bundle'), {
    caPem: enrolled.caPem,
    manifest: enrolled.manifest,
    identities: { updater: { certPem: enrolled.updater.certPem, keyPem: enrolled.updater.keyPem } },
  });
  const worker = {
    name: 'w-1',
    stateDir,
    root: join(dir, 'w-1', 'root'),
    updaterFingerprint: enrolled.updater.fingerprint,
  };
  const f: Fleet = { t, dir, worker, updater: undefined };
  f.updater = await spawnUpdater(worker, { listen: `127.0.0.1:${updaterPort}` });
  const approver = o.approver ? await o.approver(t) : undefined;
  for (const r of releases) expect((await upload(f, r, approver)).ok).toBe(true);
  return f;
}

async function stopFleet(f: Fleet | undefined): Promise<void> {
  if (!f) return;
  await f.updater?.stop();
  await killRecordedAgent(f.worker);
  await f.t.close();
  await rm(f.dir, { recursive: true, force: true });
}

let f: Fleet | undefined;
let t: TestController;
let updater: UpdaterProcess | undefined;

beforeAll(async () => {
  f = await startFleet('ctl-rollback', ['1.0.0', '1.1.0']);
  t = f.t;
  updater = f.updater;
}, 120_000);

afterAll(async () => {
  if (f) f.updater = updater;
  await stopFleet(f);
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

describe('controller rollback with `update: 1` approvals', () => {
  let g: Fleet | undefined;
  let alice = '';
  let bob = '';
  beforeAll(async () => {
    g = await startFleet('ctl-rollback-gated', ['1.0.0', '1.1.0'], {
      approvals: { policy: { update: 1 } },
      dashboard: true,
      approver: async (c) => {
        alice = await operator(c, 'alice', ['read', 'update', 'approve']);
        bob = await operator(c, 'bob', ['read', 'approve']);
        return bob;
      },
    });
  }, 180_000);
  afterAll(async () => stopFleet(g));

  it('waits (202) and changes nothing until a second operator approves; the requester cannot approve it', async () => {
    const c = g!.t;
    const current = async (): Promise<string | null | undefined> =>
      (await c.admin<AdminReleasesResponse>('GET', '/v1/releases?host=w-1')).body.hosts[0]?.current;
    const rollbackOps = async (): Promise<number> =>
      (await c.admin<{ operations: { target: string }[] }>('GET', '/v1/ops')).body.operations.filter(
        (o) => o.target === 'rollback host w-1',
      ).length;
    expect(await current()).toBe('1.1.0');

    // The CLI prints the request and how another operator approves it, and exits 0.
    const env = { CORRAL_URL: c.endpoints.admin, CORRAL_TOKEN: alice };
    const out = await corral(['controller', 'rollback', 'w-1', '--json'], env);
    expect(out.code, out.stderr).toBe(0);
    const pending = JSON.parse(out.stdout) as ApprovalPending;
    expect(pending.approval).toMatchObject({
      action: 'update',
      target: 'rollback w-1',
      state: 'pending',
      requester: 'alice',
      required: 1,
    });
    const id = pending.approval.id;
    expect(pending.approveWith).toBe(`corral controller approvals approve ${id}`);
    expect(out.stderr).toContain(
      `rollback of w-1 waits for approval; another operator runs: ${pending.approveWith}`,
    );

    // Asking again while it waits is the same request (202 over the API too); nothing ran.
    const again = await c.admin<ApprovalPending>('POST', '/v1/hosts/w-1/rollback', {}, alice);
    expect(again.status).toBe(202);
    expect(again.body.approval.id).toBe(id);
    const table = await corral(['controller', 'rollback', 'w-1'], env);
    expect(table.code).toBe(0);
    expect(table.stdout).toMatch(new RegExp(`approval\\s+${id}`));
    expect(await current()).toBe('1.1.0');
    expect(await rollbackOps()).toBe(0);

    // The dashboard's Roll back says the same request waits (npm run build makes dist/ui).
    if (hasChromium) {
      const browser = await launchChromium();
      try {
        const page = await logIn(
          await browser.newContext(),
          c.endpoints.admin ?? '',
          alice,
          '#/host/w-1/releases',
        );
        page.once('dialog', (d) => void d.accept());
        await page.getByRole('button', { name: 'Roll back' }).click();
        const waiting = page.locator('#rollback-status [data-approval]');
        await waiting.waitFor({ timeout: 30_000 });
        expect(await waiting.getAttribute('data-approval')).toBe(id);
        expect(await page.locator('#rollback-status').textContent()).toContain('Waiting for 1 approval');
      } finally {
        await browser.close();
      }
    }
    expect(await current()).toBe('1.1.0');

    // An unknown host is still a 404, not a request.
    const unknown = await c.admin('POST', '/v1/hosts/nope/rollback', {}, alice);
    expect(unknown.status).toBe(404);

    // The requester cannot approve their own.
    const own = await c.admin<{ error: { code: string } }>('POST', `/v1/approvals/${id}/approve`, {}, alice);
    expect(own.status).toBe(403);
    expect(await current()).toBe('1.1.0');
    expect(await rollbackOps()).toBe(0);

    // Bob's approval runs it, as alice's operation.
    const approved = await c.admin<ApprovalView>('POST', `/v1/approvals/${id}/approve`, {}, bob);
    expect(approved.status, JSON.stringify(approved.body)).toBe(200);
    expect(approved.body).toMatchObject({ state: 'completed', approvers: ['bob'] });
    const result = approved.body.result as AdminRollbackResponse;
    expect(result).toMatchObject({ host: 'w-1', outcome: 'rolled-back', current: '1.0.0', from: '1.1.0' });
    expect(await current()).toBe('1.0.0');
    const op = await c.admin<OperationDetail>('GET', `/v1/ops/${result.operationId}`);
    expect(op.body.operation).toMatchObject({
      state: 'succeeded',
      target: 'rollback host w-1',
      actor: 'alice',
    });
    const audit = await c.admin<{ entries: AuditEntry[] }>('GET', '/v1/audit?limit=1000');
    const entries = audit.body.entries.map((e) => [e.actor, e.action, e.target]);
    expect(entries).toContainEqual(['alice', 'rollback', 'w-1']);
    expect(entries).toContainEqual(['bob', 'approval-approved', id]);
  }, 120_000);
});

describe('controller rollback with one release only', () => {
  let one: Fleet | undefined;
  beforeAll(async () => {
    one = await startFleet('ctl-rollback-one', ['1.0.0']);
  }, 120_000);
  afterAll(async () => stopFleet(one));

  it('is a 409 (nothing to roll back to), the CLI exits non-zero, the release stays and the operation records it', async () => {
    const c = one!.t;
    const res = await c.admin<{ error: { code: string; message: string } }>(
      'POST',
      '/v1/hosts/w-1/rollback',
      {},
    );
    expect(res.status).toBe(409);
    expect(res.body.error.code).toBe('CORRAL_ERR_CONFLICT');
    expect(res.body.error.message).toContain('w-1: ');
    expect(res.body.error.message).toContain('no previous release to roll back to');

    const env = { CORRAL_URL: c.endpoints.admin, CORRAL_TOKEN: c.adminToken };
    const out = await corral(['controller', 'rollback', 'w-1'], env);
    expect(out.code).not.toBe(0);
    expect(out.stderr).toContain('CORRAL_ERR_CONFLICT');

    const rel = await c.admin<AdminReleasesResponse>('GET', '/v1/releases?host=w-1');
    expect(rel.body.hosts[0]).toMatchObject({ current: '1.0.0', previous: null });
    const ops = await c.admin<{ operations: { state: string; target: string }[] }>('GET', '/v1/ops');
    const tried = ops.body.operations.filter((o) => o.target === 'rollback host w-1');
    expect(tried.map((o) => o.state)).toEqual(['failed', 'failed']);
  }, 60_000);
});

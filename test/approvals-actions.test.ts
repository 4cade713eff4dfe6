/**
 * Approvals for teardown, release pushes, operator changes and the controller's own
 * reschedule, over a real controller (real SQLite, real TLS heartbeats from enrolled hosts
 * whose agents and updaters are not running, so every dispatch fails fast and is recorded).
 * The controller's clock is skewed forward to make a host offline past `reschedule_after`
 * without waiting for it.
 */
import { readdir, rm } from 'node:fs/promises';
import { createReadStream } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { AuditEntry } from '../protocol/admin-audit.js';
import type { AdminUpdateResponse } from '../protocol/admin-update.js';
import type { ApprovalListResponse, ApprovalPending, ApprovalView } from '../protocol/approvals.js';
import type { DeployResponse, ServiceListResponse } from '../protocol/deployment.js';
import type { EnrollResponse } from '../protocol/enrollment.js';
import type { OperationDetail, OperationListResponse } from '../protocol/operations.js';
import type { OperatorCreateResponse, OperatorListResponse } from '../protocol/operators.js';
import {
  agentMaterial,
  heartbeatBody,
  postJson,
  startController,
  waitFor,
  workerClient,
  type TestController,
} from './controller-fixture.js';
import { spec, svc } from './deploy-fixture.js';
import { freePort } from './rsyslog-fixtures.js';
import { buildRelease, tempDir, type BuiltRelease } from './updater-harness.js';

type ErrorBody = { error: { code: string; message: string } };
const TTL_MS = 600_000;
/** Longer than OFFLINE_AFTER_INTERVALS heartbeat intervals plus the reschedule delay. */
const LOST_SKEW_MS = 200_000;

let t: TestController;
let skewMs = 0;
let alice: string;
let bob: string;
let dir: string;
const hosts: Record<string, EnrollResponse> = {};

/** One heartbeat from `name`, as its agent would send it (the controller's clock sets last_seen). */
async function beat(name: string): Promise<void> {
  const enrolled = hosts[name];
  if (!enrolled) throw new Error(`no host ${name}`);
  await using client = workerClient(t.endpoints.worker, agentMaterial(enrolled));
  const res = await postJson(client, '/v1/heartbeat', heartbeatBody(enrolled.hostId));
  expect(res.status).toBe(200);
}

async function operator(target: TestController, name: string, scopes: string[]): Promise<string> {
  const res = await target.admin<OperatorCreateResponse>('POST', '/v1/operators', { name, scopes });
  expect(res.status).toBe(200);
  return res.body.token ?? '';
}

const approvals = async (): Promise<ApprovalView[]> =>
  (await t.admin<ApprovalListResponse>('GET', '/v1/approvals')).body.approvals;

async function auditOf(target: TestController, id: string): Promise<string[][]> {
  const { body } = await target.admin<{ entries: AuditEntry[] }>('GET', '/v1/audit?limit=1000');
  return body.entries.filter((e) => e.target === id).map((e) => [e.actor, e.action]);
}

beforeAll(async () => {
  dir = await tempDir('approvals-actions');
  t = await startController({
    clock: { now: () => Date.now() + skewMs },
    heartbeatIntervalMs: 30_000,
    heartbeatBudget: 'unlimited',
    schedule: { tickMs: 100, rescheduleAfterMs: 1_000 },
    approvals: {
      policy: { teardown: 1, update: 1, reschedule: 1 },
      updateAllOnly: true,
      ttlMs: TTL_MS,
    },
  });
  alice = await operator(t, 'alice', ['read', 'deploy', 'update', 'approve']);
  bob = await operator(t, 'bob', ['read', 'approve']);
  for (const name of ['ap-a', 'ap-b']) {
    hosts[name] = await t.enroll(name, { agentPort: await freePort(), updaterPort: await freePort() });
    await beat(name);
  }
}, 60_000);
afterAll(async () => {
  await t?.close();
  if (dir) await rm(dir, { recursive: true, force: true });
});

describe('the controller’s own reschedule, with `reschedule: 1`', () => {
  it('waits for approval, is cancelled as resolved when the host comes back, and runs as the controller once approved', async () => {
    const deployed = await t.admin<DeployResponse>('POST', '/v1/deploy', { spec: spec(svc('web')) });
    expect(deployed.status).toBe(200);
    const first = deployed.body.plan[0]?.host ?? '';
    const other = first === 'ap-a' ? 'ap-b' : 'ap-a';

    // The first host falls silent past the reschedule delay; the other one keeps beating.
    skewMs = LOST_SKEW_MS;
    await beat(other);
    // (Until that beat lands both hosts look lost, and a request for that situation may come
    // and go first: the one that counts moves the service from one host to the other.)
    const MOVE = '2 hosts: ap-a,ap-b';
    const pendingMove = async (): Promise<ApprovalView | undefined> =>
      (await approvals()).find(
        (a) => a.action === 'reschedule' && a.state === 'pending' && a.target === MOVE,
      );
    let raised: ApprovalView | undefined;
    await waitFor(async () => (raised = await pendingMove()) !== undefined);
    expect(raised).toMatchObject({ requester: 'controller', required: 1 });
    // Nothing moved while it waits.
    const waiting = (await t.admin<ServiceListResponse>('GET', '/v1/services')).body.services;
    expect(waiting.map((s) => [s.service, s.host])).toEqual([['web', first]]);

    // The host comes back before anyone approved: the request is cancelled on its own.
    await beat(first);
    const id = raised?.id ?? '';
    await waitFor(
      async () => (await t.admin<ApprovalView>('GET', `/v1/approvals/${id}`)).body.state !== 'pending',
    );
    const resolved = (await t.admin<ApprovalView>('GET', `/v1/approvals/${id}`)).body;
    expect(resolved).toMatchObject({ state: 'cancelled', reason: 'resolved' });
    expect(await auditOf(t, id)).toEqual([
      ['controller', 'approval-requested'],
      ['controller', 'approval-cancelled'],
    ]);

    // Lost again, and this time approved: the reschedule runs as the controller's operation.
    skewMs = 2 * LOST_SKEW_MS;
    await beat(other);
    let again: ApprovalView | undefined;
    await waitFor(async () => (again = await pendingMove()) !== undefined);
    expect(again?.id).not.toBe(id);
    const approved = await t.admin<ApprovalView>(
      'POST',
      `/v1/approvals/${again?.id ?? ''}/approve`,
      undefined,
      bob,
    );
    expect(approved.status).toBe(200);
    expect(approved.body).toMatchObject({ state: 'completed', approvers: ['bob'], reason: null });
    const result = approved.body.result as { action: string; operationId: string };
    expect(result.action).toBe('reschedule');
    const op = (await t.admin<OperationDetail>('GET', `/v1/ops/${result.operationId}`)).body;
    expect(op.operation).toMatchObject({ kind: 'reschedule', actor: 'controller' });
    expect(op.log.map((l) => l.message)).toContain('approved by bob');
    const moved = (await t.admin<ServiceListResponse>('GET', '/v1/services')).body.services;
    // Desired on the other host now; the lost one still lists it as removed until it confirms.
    expect(moved.map((s) => [s.service, s.host, s.desired]).sort()).toEqual(
      [
        ['web', first, 'removed'],
        ['web', other, 'running'],
      ].sort(),
    );
    // Both hosts answer again, so nothing is left to reschedule for the next cases.
    await beat(first);
  }, 60_000);
});

describe('teardown with `teardown: 1`', () => {
  it('waits, cannot be approved by its requester, and once approved runs as the requester’s teardown', async () => {
    const asked = await t.admin<ApprovalPending>('POST', '/v1/teardown', { service: 'web' }, alice);
    expect(asked.status).toBe(202);
    expect(asked.body.approval).toMatchObject({
      action: 'teardown',
      target: 'service web',
      state: 'pending',
      requester: 'alice',
    });
    const again = await t.admin<ApprovalPending>('POST', '/v1/teardown', { service: 'web' }, alice);
    expect(again.body.approval.id).toBe(asked.body.approval.id);
    const id = asked.body.approval.id;

    const self = await t.admin<ErrorBody>('POST', `/v1/approvals/${id}/approve`, undefined, alice);
    expect(self.status).toBe(403);
    const desired = async () =>
      (await t.admin<ServiceListResponse>('GET', '/v1/services')).body.services
        .filter((v) => v.desired === 'running')
        .map((v) => v.service);
    expect(await desired()).toEqual(['web']);

    const approved = await t.admin<ApprovalView>('POST', `/v1/approvals/${id}/approve`, undefined, bob);
    expect(approved.body).toMatchObject({ state: 'completed', approvers: ['bob'] });
    expect(await desired()).toEqual([]);
    expect(await auditOf(t, id)).toEqual([
      ['alice', 'approval-requested'],
      ['bob', 'approval-approved'],
      ['alice', 'approval-running'],
      ['alice', 'approval-completed'],
    ]);
    const ops = (await t.admin<OperationListResponse>('GET', '/v1/ops')).body.operations;
    expect(ops.find((o) => o.kind === 'teardown')).toMatchObject({ actor: 'alice', target: 'service web' });
  }, 30_000);
});

describe('release pushes with `update: { count: 1, all: true }`', () => {
  let release: BuiltRelease;
  const keptDir = join(tmpdir(), `corral-uploads-${process.pid}`, 'approvals');
  const kept = async (): Promise<string[]> => readdir(keptDir).catch(() => []);

  async function push(
    query: string,
  ): Promise<{ status: number; body: AdminUpdateResponse & ApprovalPending }> {
    const res = await request(`${t.endpoints.admin}/v1/update?${query}`, {
      method: 'POST',
      headers: {
        authorization: `Bearer ${alice}`,
        'content-type': 'application/octet-stream',
        'content-length': String(release.bytes),
      },
      body: createReadStream(release.file),
    });
    return { status: res.statusCode, body: (await res.body.json()) as AdminUpdateResponse & ApprovalPending };
  }

  beforeAll(async () => {
    release = await buildRelease(dir, '7.0.0');
  }, 60_000);

  it('runs a push to named hosts at once, and keeps a push to all hosts waiting until approved', async () => {
    const named = await push('hosts=ap-a');
    expect(named.status).toBe(200);
    expect(named.body.hosts.map((h) => [h.host, h.outcome])).toEqual([['ap-a', 'failed']]);

    const all = await push('all=true');
    expect(all.status).toBe(202);
    expect(all.body.approval).toMatchObject({ action: 'update', requester: 'alice', state: 'pending' });
    expect(all.body.approval.target).toBe(`sha256:${release.sha256.slice(0, 16)} to all hosts`);
    expect(await kept()).toHaveLength(1);
    // Asked again while pending: the same request, and still one kept upload.
    const again = await push('all=true');
    expect(again.body.approval.id).toBe(all.body.approval.id);
    expect(await kept()).toHaveLength(1);

    const id = all.body.approval.id;
    const approved = await t.admin<ApprovalView>('POST', `/v1/approvals/${id}/approve`, undefined, bob);
    expect(approved.body).toMatchObject({ state: 'completed', approvers: ['bob'] });
    const result = approved.body.result as AdminUpdateResponse;
    expect(result.version).toBe('7.0.0');
    expect(result.hosts.map((h) => h.host).sort()).toEqual(['ap-a', 'ap-b']);
    expect(await kept()).toEqual([]);
    expect(await auditOf(t, id)).toEqual([
      ['alice', 'approval-requested'],
      ['bob', 'approval-approved'],
      ['alice', 'approval-running'],
      ['alice', 'approval-completed'],
    ]);
    const ops = (await t.admin<OperationListResponse>('GET', '/v1/ops')).body.operations;
    expect(ops.find((o) => o.id === result.operationId)).toMatchObject({ kind: 'update', actor: 'alice' });

    // A rejected push frees its upload and never runs.
    const third = await push('all=true');
    expect(third.status).toBe(202);
    expect(await kept()).toHaveLength(1);
    const rejected = await t.admin<ApprovalView>(
      'POST',
      `/v1/approvals/${third.body.approval.id}/reject`,
      { reason: 'not this week' },
      bob,
    );
    expect(rejected.body).toMatchObject({ state: 'rejected', reason: 'not this week' });
    expect(await kept()).toEqual([]);
  }, 60_000);
});

describe('operator changes with `operators: 1`', () => {
  let c: TestController | undefined;
  let stateDir: string;
  afterAll(async () => {
    await c?.close();
    if (stateDir) await rm(stateDir, { recursive: true, force: true });
  });

  it('a new operator’s token reaches only its requester, who runs the approved create; a revoke runs at approval', async () => {
    stateDir = await tempDir('approvals-operators');
    // The operators who approve exist before `operators` approvals are turned on.
    const setup = await startController({ dir: stateDir });
    const root = await operator(setup, 'root', ['admin']);
    const checker = await operator(setup, 'checker', ['approve', 'read']);
    await setup.close();
    c = await startController({ dir: stateDir, approvals: { policy: { operators: 1 }, ttlMs: TTL_MS } });

    const body = { name: 'carol', scopes: ['read'] };
    const asked = await c.admin<ApprovalPending>('POST', '/v1/operators', body, root);
    expect(asked.status).toBe(202);
    expect(asked.body.approval).toMatchObject({
      action: 'operators',
      target: 'create carol',
      requester: 'root',
    });
    const id = asked.body.approval.id;
    const approved = await c.admin<ApprovalView>('POST', `/v1/approvals/${id}/approve`, undefined, checker);
    expect(approved.body).toMatchObject({ state: 'approved', result: null });
    const listed = (await c.admin<OperatorListResponse>('GET', '/v1/operators', undefined, root)).body;
    expect(listed.operators.map((o) => o.name)).not.toContain('carol');

    // Something other than what was approved is refused; exactly what was approved runs.
    const other = await c.admin<ErrorBody>('POST', '/v1/operators', { ...body, scopes: ['admin'] }, root);
    expect(other.status).toBe(409);
    const created = await c.admin<OperatorCreateResponse>('POST', '/v1/operators', body, root);
    expect(created.status).toBe(200);
    const carol = created.body.token ?? '';
    expect(carol).toMatch(/^corral_op_/);
    const done = (await c.admin<ApprovalView>('GET', `/v1/approvals/${id}`)).body;
    expect(done.state).toBe('completed');
    expect(JSON.stringify(done)).not.toContain(carol);
    expect(JSON.stringify(done.result)).toContain('"name":"carol"');
    expect((await c.admin('GET', '/v1/hosts', undefined, carol)).status).toBe(200);
    expect(await auditOf(c, id)).toEqual([
      ['root', 'approval-requested'],
      ['checker', 'approval-approved'],
      ['root', 'approval-running'],
      ['root', 'approval-completed'],
    ]);

    const revoke = await c.admin<ApprovalPending>('POST', '/v1/operators/carol/revoke', undefined, root);
    expect(revoke.status).toBe(202);
    expect((await c.admin('GET', '/v1/hosts', undefined, carol)).status).toBe(200);
    const revoked = await c.admin<ApprovalView>(
      'POST',
      `/v1/approvals/${revoke.body.approval.id}/approve`,
      undefined,
      checker,
    );
    expect(revoked.body.state).toBe('completed');
    expect((await c.admin('GET', '/v1/hosts', undefined, carol)).status).toBe(401);
  }, 60_000);
});

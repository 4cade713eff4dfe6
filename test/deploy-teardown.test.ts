import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import type { AuditEntry } from '../protocol/admin-audit.js';
import type { HostListResponse } from '../protocol/admin-hosts.js';
import type { DeployResponse, ServiceTeardownResponse } from '../protocol/deployment.js';
import { ErrorCode } from '../protocol/errors.js';
import type { OperationDetail, OperationListResponse } from '../protocol/operations.js';
import { startController, waitFor, type TestController } from './controller-fixture.js';
import {
  addWorker,
  LIVENESS_INTERVAL_MS,
  observedMap,
  servicesOf,
  spec,
  svc,
  type FleetWorker,
} from './deploy-fixture.js';

type Err = { error: { code: string; message: string } };

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const fn of cleanups.splice(0).reverse()) await fn();
});

async function fleet(names: readonly string[]): Promise<{ t: TestController; workers: FleetWorker[] }> {
  const t = await startController({ heartbeatIntervalMs: LIVENESS_INTERVAL_MS });
  cleanups.push(() => t.close());
  const workers: FleetWorker[] = [];
  for (const name of names) {
    const w = await addWorker(t, name);
    cleanups.push(() => w.destroy());
    workers.push(w);
  }
  await waitFor(async () => {
    const { hosts } = (await t.admin<HostListResponse>('GET', '/v1/hosts')).body;
    return names.every((n) => hosts.find((h) => h.name === n)?.status === 'online');
  });
  return { t, workers };
}

const teardown = (t: TestController, body: unknown) =>
  t.admin<ServiceTeardownResponse>('POST', '/v1/teardown', body);

/** The services the agent itself reports (its own /v1/status, through the core). */
async function agentServices(w: FleetWorker): Promise<string[]> {
  const status = await w.agent()?.core.status();
  return (status?.services ?? []).map((s) => s.name);
}

describe('teardown', () => {
  it('removes one service, then one host, then everything; agents stop them and the view follows', async () => {
    const { t, workers } = await fleet(['td-a', 'td-b']);
    const [a, b] = workers as [FleetWorker, FleetWorker];
    const deployed = await t.admin<DeployResponse>('POST', '/v1/deploy', {
      spec: spec(svc('s1'), svc('s2'), svc('s3'), svc('s4')),
    });
    expect(deployed.body.ok).toBe(true);
    const where = Object.fromEntries(deployed.body.plan.map((p) => [p.service, p.host]));
    await waitFor(async () => Object.values(observedMap(await servicesOf(t))).every((s) => s === 'running'));

    const one = await teardown(t, { service: 's1' });
    expect(one.status).toBe(200);
    expect(one.body.removed).toEqual([{ service: 's1', host: where.s1 }]);
    // Only the host that had s1 gets a new set.
    expect(one.body.hosts).toEqual([
      { host: where.s1, outcome: 'applied', generation: 2, services: 1, reason: null },
    ]);
    const hostOfS1 = where.s1 === 'td-a' ? a : b;
    await waitFor(async () => !(await agentServices(hostOfS1)).includes('s1'));
    await waitFor(async () => !(await servicesOf(t)).some((v) => v.service === 's1'));

    const host = await teardown(t, { host: 'td-b' });
    expect(host.body.removed.every((r) => r.host === 'td-b')).toBe(true);
    expect(host.body.hosts.map((h) => [h.host, h.outcome, h.services])).toEqual([['td-b', 'applied', 0]]);
    await waitFor(async () => (await agentServices(b)).length === 0);
    await waitFor(async () => (await servicesOf(t, '?host=td-b')).length === 0);

    const missing = await t.admin<Err>('POST', '/v1/teardown', { service: 's1' });
    expect([missing.status, missing.body.error.code]).toEqual([404, ErrorCode.NOT_FOUND]);
    const noHost = await t.admin<Err>('POST', '/v1/teardown', { host: 'nowhere' });
    expect([noHost.status, noHost.body.error.code]).toEqual([404, ErrorCode.NOT_FOUND]);

    const all = await teardown(t, {});
    expect(all.body.ok).toBe(true);
    expect(all.body.hosts.map((h) => [h.host, h.services])).toEqual([['td-a', 0]]);
    await waitFor(async () => (await agentServices(a)).length === 0);
    await waitFor(async () => (await servicesOf(t)).length === 0);

    // Nothing left: a teardown of everything is a no-op, not an operation.
    expect((await teardown(t, {})).body).toEqual({ operationId: null, removed: [], hosts: [], ok: true });
    const ops = (await t.admin<OperationListResponse>('GET', '/v1/ops')).body.operations;
    expect(ops.map((o) => [o.kind, o.state, o.target])).toEqual([
      ['teardown', 'succeeded', 'all'],
      ['teardown', 'succeeded', 'host td-b'],
      ['teardown', 'succeeded', 'service s1'],
      ['deploy', 'succeeded', '4 services'],
    ]);
    const audit = (await t.admin<{ entries: AuditEntry[] }>('GET', '/v1/audit')).body.entries;
    expect(audit.filter((e) => e.action === 'teardown').map((e) => [e.actor, e.target])).toEqual([
      ['admin', 'service s1'],
      ['admin', 'host td-b'],
      ['admin', 'all'],
    ]);
  });

  it('a teardown that cannot reach the agent keeps the service as removed-but-failed until a retry gets through', async () => {
    const { t, workers } = await fleet(['tf-a']);
    const [a] = workers as [FleetWorker];
    await t.admin('POST', '/v1/deploy', { spec: spec(svc('x1')) });
    await waitFor(async () => (await servicesOf(t))[0]?.observed === 'running');
    await a.stop();
    const res = await teardown(t, { service: 'x1' });
    expect(res.body.ok).toBe(false);
    expect(res.body.hosts[0]).toMatchObject({ host: 'tf-a', outcome: 'failed' });
    const [view] = await servicesOf(t);
    expect(view).toMatchObject({ service: 'x1', host: 'tf-a', desired: 'removed', observed: 'failed' });
    expect(view?.lastError).toMatch(/^unreachable/);

    // Back up: a teardown of everything re-sends what the host is still owed.
    await a.start();
    const retry = await teardown(t, {});
    expect(retry.body).toMatchObject({ ok: true, removed: [] });
    expect(retry.body.hosts.map((h) => [h.host, h.outcome])).toEqual([['tf-a', 'applied']]);
    await waitFor(async () => (await servicesOf(t)).length === 0);
  });
});

describe('operations across a controller restart', () => {
  it('marks an operation left running by a dead controller as failed, with a log line, at the next start', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'corral-ctl-restart-'));
    cleanups.push(() => rm(dir, { recursive: true, force: true }));
    const first = await startController({ dir });
    const host = await first.enroll('rs-a', { agentPort: 1 });
    // What a controller that died mid-deploy leaves behind: a running operation, a running
    // step, its log, and a dispatch the agent never confirmed.
    const now = new Date().toISOString();
    await first.db
      .insertInto('operations')
      .values({
        id: 'op-interrupted-1',
        kind: 'deploy',
        state: 'running',
        actor: 'admin',
        target: '1 services',
        created_at: now,
        finished_at: null,
        reason: null,
        summary: JSON.stringify({ services: 1, removed: 0, hosts: 1, failedHosts: 0 }),
      })
      .execute();
    await first.db
      .insertInto('operation_steps')
      .values({
        operation_id: 'op-interrupted-1',
        host_id: host.hostId,
        host_name: 'rs-a',
        state: 'running',
        generation: 1,
        services: 1,
        detail: null,
        started_at: now,
        finished_at: null,
      })
      .execute();
    await first.db
      .insertInto('operation_log')
      .values({
        operation_id: 'op-interrupted-1',
        seq: 1,
        time: now,
        level: 'info',
        host: null,
        message: 'deploy started',
      })
      .execute();
    await first.db
      .insertInto('desired_services')
      .values({ host_id: host.hostId, service: 'api', spec: '{}', spec_hash: 'x', updated_at: now })
      .execute();
    await first.db
      .insertInto('service_dispatch')
      .values({
        host_id: host.hostId,
        service: 'api',
        desired: 'running',
        state: 'pending',
        reason: null,
        generation: 1,
        updated_at: now,
      })
      .execute();
    // The log is append-only.
    await expect(
      first.db.updateTable('operation_log').set({ message: 'rewritten' }).execute(),
    ).rejects.toThrow(/append-only/);
    await expect(first.db.deleteFrom('operation_log').execute()).rejects.toThrow(/append-only/);
    await first.close();

    await using second = await startController({ dir });
    const detail = await second.admin<OperationDetail>('GET', '/v1/ops/op-interrupted-1');
    expect(detail.status).toBe(200);
    expect(detail.body.operation).toMatchObject({
      state: 'failed',
      reason: 'controller restarted while the operation was running',
    });
    expect(detail.body.operation.finishedAt).not.toBeNull();
    expect(detail.body.steps).toEqual([
      expect.objectContaining({
        host: 'rs-a',
        state: 'failed',
        detail: 'controller restarted while the operation was running',
      }),
    ]);
    expect(detail.body.log.map((l) => [l.seq, l.level, l.message])).toEqual([
      [1, 'info', 'deploy started'],
      [2, 'error', 'controller restarted while the operation was running'],
    ]);
    const [view] = await servicesOf(second);
    expect(view).toMatchObject({ service: 'api', host: 'rs-a', observed: 'failed' });
    expect(view?.lastError).toMatch(/restarted/);
    const unknown = await second.admin<Err>('GET', '/v1/ops/no-such-op');
    expect([unknown.status, unknown.body.error.code]).toEqual([404, ErrorCode.NOT_FOUND]);
  });
});

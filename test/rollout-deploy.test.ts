/**
 * Staged deploys against real agents: a canary deploy whose canary host fails halts with the
 * other hosts untouched (and the scheduler leaves them so), `ops resume` sends them, and
 * `ops cancel` ends another halted deploy with its untouched host left as it was.
 */
import { afterEach, describe, expect, it } from 'vitest';
import type { HostListResponse } from '../protocol/admin-hosts.js';
import type { DeployResponse } from '../protocol/deployment.js';
import type { OperationDetail, OperationView } from '../protocol/operations.js';
import { startController, waitFor, type TestController } from './controller-fixture.js';
import { addWorker, LIVENESS_INTERVAL_MS, spec, svc, type FleetWorker } from './deploy-fixture.js';

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

const deploy = (t: TestController, body: unknown) => t.admin<DeployResponse>('POST', '/v1/deploy', body);
const detail = async (t: TestController, id: string) =>
  (await t.admin<OperationDetail>('GET', `/v1/ops/${id}`)).body;
const steps = (d: OperationDetail) => d.steps.map((s) => `${s.host}:${s.state}`);
/** One service per host (spread, three instances), with a version in its env. */
const versioned = (v: string) => spec(svc('web', { count: 3, env: { V: v } }));

describe('staged deploy', () => {
  it('halts after a failed canary, leaves the rest untouched (the scheduler too), and resume sends them', async () => {
    const { t, workers } = await fleet(['a-1', 'b-1', 'c-1']);
    const first = await deploy(t, { spec: versioned('1') });
    expect(first.body).toMatchObject({ ok: true, state: 'succeeded' });

    await (workers[0] as FleetWorker).stop();
    const res = await deploy(t, { spec: versioned('2'), rollout: { canary: 1, canaryWaitMs: 0 } });
    expect(res.status).toBe(200);
    expect(res.body).toMatchObject({ ok: false, state: 'halted' });
    expect(res.body.reason).toMatch(/^halted at a-1: unreachable/);
    expect(res.body.hosts.map((h) => `${h.host}:${h.outcome}`)).toEqual([
      'a-1:failed',
      'b-1:untouched',
      'c-1:untouched',
    ]);
    const id = res.body.operationId ?? '';
    expect(steps(await detail(t, id))).toEqual(['a-1:failed', 'b-1:pending', 'c-1:pending']);

    // A scheduler pass heals what failed, never what the halt left untouched.
    await t.controller.deployer.reconcile();
    const ops = (await t.admin<{ operations: OperationView[] }>('GET', '/v1/ops')).body.operations;
    for (const op of ops.filter((o) => o.id !== id && o.kind !== 'deploy')) {
      const hosts = (await detail(t, op.id)).steps.map((s) => s.host);
      expect(hosts).not.toContain('b-1');
      expect(hosts).not.toContain('c-1');
    }
    expect(steps(await detail(t, id))).toEqual(['a-1:failed', 'b-1:pending', 'c-1:pending']);

    const resumed = await t.admin<OperationView>('POST', `/v1/ops/${id}/resume`, {});
    expect(resumed.status).toBe(200);
    // a-1 failed in this operation; b-1 and c-1 now have the new set.
    expect(resumed.body).toMatchObject({ state: 'partial', summary: { hosts: 3, failedHosts: 1 } });
    const after = await detail(t, id);
    expect(steps(after)).toEqual(['a-1:failed', 'b-1:succeeded', 'c-1:succeeded']);
    expect(after.log.map((l) => l.message)).toContain('resumed by admin: 2 hosts left');
  });

  it('cancel ends a halted deploy: the untouched host is skipped and stays on its old set', async () => {
    const { t, workers } = await fleet(['a-1', 'b-1']);
    expect((await deploy(t, { spec: spec(svc('web', { count: 2, env: { V: '1' } })) })).body.ok).toBe(true);
    await (workers[0] as FleetWorker).stop();
    const res = await deploy(t, {
      spec: spec(svc('web', { count: 2, env: { V: '2' } })),
      rollout: { maxParallel: 1 },
    });
    expect(res.body.state).toBe('halted');
    const id = res.body.operationId ?? '';
    const cancelled = await t.admin<OperationView>('POST', `/v1/ops/${id}/cancel`, {});
    expect(cancelled.body.state).toBe('cancelled');
    expect(steps(await detail(t, id))).toEqual(['a-1:failed', 'b-1:skipped']);
    await t.controller.deployer.reconcile();
    expect(steps(await detail(t, id))).toEqual(['a-1:failed', 'b-1:skipped']);
    const ops = (await t.admin<{ operations: OperationView[] }>('GET', '/v1/ops')).body.operations;
    for (const op of ops.filter((o) => o.id !== id && o.kind !== 'deploy')) {
      expect((await detail(t, op.id)).steps.map((s) => s.host)).not.toContain('b-1');
    }
  });
});

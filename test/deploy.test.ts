import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { createAgent } from '../agent/index.js';
import { loadBundle, writeBundle } from '../pki/index.js';
import type { AuditEntry } from '../protocol/admin-audit.js';
import type { HostListResponse } from '../protocol/admin-hosts.js';
import type { DeployResponse } from '../protocol/deployment.js';
import { ErrorCode } from '../protocol/errors.js';
import type { OperationDetail, OperationListResponse } from '../protocol/operations.js';
import { agentCaller, fastAgentOptions } from './agent-fixture.js';
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

async function fleet(
  names: readonly string[],
  labels: Record<string, Record<string, string>> = {},
): Promise<{ t: TestController; workers: FleetWorker[] }> {
  const t = await startController({ heartbeatIntervalMs: LIVENESS_INTERVAL_MS });
  cleanups.push(() => t.close());
  const workers: FleetWorker[] = [];
  for (const name of names) {
    const w = await addWorker(t, name, { ...(labels[name] && { labels: labels[name] }) });
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

describe('deploy', () => {
  it('places round robin honouring constraints, the agents run the services, and redeploys keep placement', async () => {
    const { t } = await fleet(['alpha', 'beta'], { beta: { disk: 'ssd' } });
    const first = await deploy(t, {
      spec: spec(
        svc('api'),
        svc('db', { placement: { labels: { disk: 'ssd' } } }),
        svc('web'),
        svc('worker'),
      ),
    });
    expect(first.status).toBe(200);
    const placed = Object.fromEntries(first.body.plan.map((p) => [p.service, p.host]));
    expect(placed.db).toBe('beta');
    // Round robin: two services on each host.
    expect(Object.values(placed).filter((h) => h === 'alpha')).toHaveLength(2);
    expect(first.body.plan.every((p) => p.change === 'placed')).toBe(true);
    expect(first.body.ok).toBe(true);
    expect(first.body.hosts).toEqual([
      { host: 'alpha', outcome: 'applied', generation: 1, services: 2, reason: null },
      { host: 'beta', outcome: 'applied', generation: 1, services: 2, reason: null },
    ]);

    // Observed state arrives with the agents' heartbeats.
    await waitFor(async () => Object.values(observedMap(await servicesOf(t))).every((s) => s === 'running'));
    const views = await servicesOf(t);
    expect(views.map((v) => `${v.service}@${v.host}`)).toEqual(
      ['api', 'db', 'web', 'worker'].map((s) => `${s}@${placed[s]}`),
    );
    expect(views.every((v) => v.desired === 'running' && v.restarts === 0 && v.lastError === null)).toBe(
      true,
    );
    expect((await servicesOf(t, '?host=beta')).map((v) => v.service).sort()).toEqual(
      Object.keys(placed)
        .filter((s) => placed[s] === 'beta')
        .sort(),
    );

    // The same spec again: every service stays, the generations stay, the agents answer no-op.
    const again = await deploy(t, {
      spec: spec(
        svc('api'),
        svc('db', { placement: { labels: { disk: 'ssd' } } }),
        svc('web'),
        svc('worker'),
      ),
    });
    expect(again.body.plan.every((p) => p.change === 'kept')).toBe(true);
    expect(again.body.hosts.map((h) => [h.host, h.outcome, h.generation])).toEqual([
      ['alpha', 'unchanged', 1],
      ['beta', 'unchanged', 1],
    ]);

    // Change one service, drop one, add one: only what changed moves, placement holds.
    const dropped = 'worker';
    const changed = await deploy(t, {
      spec: spec(
        svc('api', { env: { MODE: 'v2' } }),
        svc('db', { placement: { labels: { disk: 'ssd' } } }),
        svc('web'),
        svc('cache'),
      ),
    });
    expect(changed.status).toBe(200);
    const plan = Object.fromEntries(changed.body.plan.map((p) => [p.service, p]));
    for (const s of ['api', 'db', 'web']) expect(plan[s]).toMatchObject({ host: placed[s], change: 'kept' });
    // The new service goes where the dropped one left room.
    expect(plan.cache).toMatchObject({ host: placed[dropped], change: 'placed' });
    expect(changed.body.removed).toEqual([{ service: dropped, host: placed[dropped] }]);
    await waitFor(async () => {
      const now = observedMap(await servicesOf(t));
      return Object.keys(now).length === 4 && Object.values(now).every((s) => s === 'running');
    });

    // Every deploy is an operation with steps and a log, and an audit entry naming the actor.
    const ops = (await t.admin<OperationListResponse>('GET', '/v1/ops')).body.operations;
    expect(ops.map((o) => [o.kind, o.state, o.actor])).toEqual([
      ['deploy', 'succeeded', 'admin'],
      ['deploy', 'succeeded', 'admin'],
      ['deploy', 'succeeded', 'admin'],
    ]);
    expect(ops[2]?.id).toBe(first.body.operationId);
    const detail = (await t.admin<OperationDetail>('GET', `/v1/ops/${first.body.operationId ?? ''}`)).body;
    expect(detail.steps.map((s) => [s.host, s.state, s.generation, s.detail])).toEqual([
      ['alpha', 'succeeded', 1, 'applied'],
      ['beta', 'succeeded', 1, 'applied'],
    ]);
    expect(detail.log.map((l) => l.seq)).toEqual(detail.log.map((_, i) => i + 1));
    expect(detail.log.at(-1)?.message).toMatch(/^deploy succeeded/);
    const tail = (
      await t.admin<OperationDetail>(
        'GET',
        `/v1/ops/${first.body.operationId ?? ''}?afterSeq=${detail.log.length - 1}`,
      )
    ).body.log;
    expect(tail).toEqual([detail.log.at(-1)]);
    const audit = (await t.admin<{ entries: AuditEntry[] }>('GET', '/v1/audit')).body.entries;
    expect(audit.filter((e) => e.action === 'deploy').map((e) => [e.actor, e.target])).toEqual(
      ops.map((o) => ['admin', o.id]).reverse(),
    );
  });

  it('dry-run changes nothing; an unplaceable spec is refused naming each service, and nothing is stored', async () => {
    const { t } = await fleet(['gamma']);
    await t.enroll('never-seen'); // enrolled but never heartbeated: pending, not eligible

    const dry = await deploy(t, { spec: spec(svc('api'), svc('web')), dryRun: true });
    expect(dry.status).toBe(200);
    expect(dry.body).toMatchObject({ operationId: null, dryRun: true, hosts: [], ok: true });
    expect(dry.body.plan.map((p) => [p.service, p.host, p.change])).toEqual([
      ['api', 'gamma', 'placed'],
      ['web', 'gamma', 'placed'],
    ]);

    const refused = await t.admin<Err>('POST', '/v1/deploy', {
      spec: spec(
        svc('api'),
        svc('db', { placement: { labels: { zone: 'mars' } } }),
        svc('edge', { placement: { hosts: ['never-seen'] } }),
      ),
    });
    expect(refused.status).toBe(422);
    expect(refused.body.error.code).toBe(ErrorCode.PLACEMENT);
    expect(refused.body.error.message).toMatch(/cannot place 2 of 3 instances; nothing was changed/);
    expect(refused.body.error.message).toContain('db (no eligible online host for labels zone=mars)');
    expect(refused.body.error.message).toContain('edge (no eligible online host for hosts never-seen)');

    const dup = await t.admin<Err>('POST', '/v1/deploy', { spec: spec(svc('api'), svc('api')) });
    expect([dup.status, dup.body.error.code]).toEqual([400, ErrorCode.VALIDATION]);
    expect(dup.body.error.message).toContain('repeat: api');
    const bad = await t.admin<Err>('POST', '/v1/deploy', {
      spec: spec(svc('api', { restart: 'sometimes' as never })),
    });
    expect([bad.status, bad.body.error.code]).toEqual([400, ErrorCode.VALIDATION]);
    expect(bad.body.error.message).toContain('restart');
    const typo = await t.admin<Err>('POST', '/v1/deploy', {
      spec: spec(svc('api', { args: ['--bind', '${host.adress}'] })),
    });
    expect([typo.status, typo.body.error.code]).toEqual([400, ErrorCode.VALIDATION]);
    expect(typo.body.error.message).toContain('/services/0/args/1 uses unknown variable ${host.adress}');

    expect(await servicesOf(t)).toEqual([]);
    expect((await t.admin<OperationListResponse>('GET', '/v1/ops')).body.operations).toEqual([]);
    const audit = (await t.admin<{ entries: AuditEntry[] }>('GET', '/v1/audit')).body.entries;
    expect(audit.filter((e) => e.action === 'deploy')).toEqual([]);
  });

  it("a host whose agent is down gets its services failed with the reason; other hosts' services are untouched", async () => {
    const { t, workers } = await fleet(['up-1', 'down-1']);
    const down = workers[1] as FleetWorker;
    const services = ['s1', 's2', 's3', 's4'];
    const v1 = await deploy(t, { spec: spec(...services.map((s) => svc(s))) });
    expect(v1.body.ok).toBe(true);
    const where = Object.fromEntries(v1.body.plan.map((p) => [p.service, p.host]));
    await waitFor(async () => Object.values(observedMap(await servicesOf(t))).every((s) => s === 'running'));

    // The agent dies; the host is still `online` (its last heartbeat is recent), so it keeps its services.
    await down.stop();
    const v2 = await deploy(t, { spec: spec(...services.map((s) => svc(s, { env: { V: '2' } }))) });
    expect(v2.status).toBe(200);
    expect(v2.body.ok).toBe(false);
    expect(v2.body.plan.every((p) => p.change === 'kept')).toBe(true);
    const byHost = Object.fromEntries(v2.body.hosts.map((h) => [h.host, h]));
    expect(byHost['up-1']).toMatchObject({ outcome: 'applied', generation: 2, reason: null });
    expect(byHost['down-1']).toMatchObject({ outcome: 'failed', generation: 2 });
    expect(byHost['down-1']?.reason).toMatch(/^unreachable: .*\(CORRAL_ERR_UNAVAILABLE\)$/);

    const views = await servicesOf(t);
    for (const v of views) {
      if (v.host === 'down-1') {
        expect(v).toMatchObject({ observed: 'failed', lastError: byHost['down-1']?.reason });
      } else {
        expect(v.observed).not.toBe('failed');
      }
    }
    expect(views.filter((v) => v.host === 'down-1').map((v) => v.service)).toEqual(
      services.filter((s) => where[s] === 'down-1'),
    );
    expect((await servicesOf(t, '?state=failed')).every((v) => v.host === 'down-1')).toBe(true);
    await waitFor(async () =>
      (await servicesOf(t, '?host=up-1')).every((v) => v.observed === 'running' && v.lastError === null),
    );

    const op = (await t.admin<OperationDetail>('GET', `/v1/ops/${v2.body.operationId ?? ''}`)).body;
    expect(op.operation).toMatchObject({ state: 'partial', summary: { hosts: 2, failedHosts: 1 } });
    expect(op.steps.map((s) => [s.host, s.state])).toEqual([
      ['down-1', 'failed'],
      ['up-1', 'succeeded'],
    ]);
    expect(
      op.log.some((l) => l.host === 'down-1' && l.level === 'error' && l.message.includes('unreachable')),
    ).toBe(true);

    // The agent comes back (re-adopting what runs); the same spec again reaches it and clears the failure.
    await down.start();
    const v3 = await deploy(t, { spec: spec(...services.map((s) => svc(s, { env: { V: '2' } }))) });
    expect(v3.body.ok).toBe(true);
    expect(Object.fromEntries(v3.body.hosts.map((h) => [h.host, h.outcome]))).toEqual({
      'up-1': 'unchanged',
      'down-1': 'applied',
    });
    await waitFor(async () => Object.values(observedMap(await servicesOf(t))).every((s) => s === 'running'));
  });

  it('never sends a set to an agent that does not present the pinned certificate', async () => {
    const { t, workers } = await fleet(['pin-ok', 'pin-bad']);
    const real = workers[1] as FleetWorker;
    await real.stop();
    // An impostor on that host's port: our CA, the same host id and role, but not the pinned key.
    const bundle = await loadBundle(join(real.stateDir, 'bundle'));
    const forged = await t.identity.ca.issue({
      role: 'agent',
      hostId: real.hostId,
      commonName: 'impostor',
      ipAddresses: ['127.0.0.1'],
    });
    const dir = await mkdtemp(join(tmpdir(), 'corral-impostor-'));
    cleanups.push(() => rm(dir, { recursive: true, force: true }));
    await writeBundle(join(dir, 'bundle'), {
      caPem: bundle.caPem,
      manifest: bundle.manifest,
      identities: { agent: { certPem: forged.certPem, keyPem: forged.keyPem } },
    });
    const impostor = await createAgent(
      fastAgentOptions(
        { stateDir: dir, hostId: real.hostId, agentFingerprint: forged.fingerprint },
        { listen: { host: '127.0.0.1', port: real.port }, heartbeat: { enabled: false } },
      ),
    );
    cleanups.push(() => impostor.close());

    const res = await deploy(t, {
      spec: spec(
        svc('good', { placement: { hosts: ['pin-ok'] } }),
        svc('bad', { placement: { hosts: ['pin-bad'] } }),
      ),
    });
    expect(res.body.ok).toBe(false);
    const byHost = Object.fromEntries(res.body.hosts.map((h) => [h.host, h]));
    expect(byHost['pin-ok']?.outcome).toBe('applied');
    expect(byHost['pin-bad']?.outcome).toBe('failed');
    expect(byHost['pin-bad']?.reason).toMatch(/^pin mismatch: .*\(CORRAL_ERR_PIN_MISMATCH\)$/);
    // The handshake failed before any request: the impostor never got the set.
    const status = await impostor.core.status();
    expect([status.generation, status.services]).toEqual([0, []]);
    const bad = (await servicesOf(t, '?host=pin-bad'))[0];
    expect(bad).toMatchObject({ service: 'bad', observed: 'failed', lastError: byHost['pin-bad']?.reason });
  });

  it('catches up with an agent whose generation is ahead of the controller (its state outlived the database)', async () => {
    const { t, workers } = await fleet(['ahead']);
    const w = workers[0] as FleetWorker;
    expect((await deploy(t, { spec: spec(svc('api')) })).body.hosts[0]?.generation).toBe(1);
    // Someone else's generation 7 reached the agent (e.g. a controller restored from an old backup).
    const caller = agentCaller(`127.0.0.1:${w.port}`, t.identity.client, w.agentFingerprint);
    cleanups.push(() => caller.close());
    const other = await caller.call('POST', '/v1/apply', { generation: 7, services: [] });
    expect(other.status).toBe(202);
    const res = await deploy(t, { spec: spec(svc('api', { env: { V: '2' } })) });
    expect(res.body.hosts).toEqual([
      { host: 'ahead', outcome: 'applied', generation: 8, services: 1, reason: null },
    ]);
    // And the controller keeps that generation: the same set again is a no-op.
    const again = await deploy(t, { spec: spec(svc('api', { env: { V: '2' } })) });
    expect(again.body.hosts.map((h) => [h.outcome, h.generation])).toEqual([['unchanged', 8]]);
    await waitFor(async () => (await servicesOf(t))[0]?.observed === 'running');
  });

  it('does not place on a host that is no longer eligible, and moves its services', async () => {
    const { t, workers } = await fleet(['m-a', 'm-b']);
    const first = await deploy(t, { spec: spec(svc('one'), svc('two')) });
    const onB = first.body.plan.find((p) => p.host === 'm-b')?.service;
    expect(onB).toBeDefined();
    // Decommissioning a host makes it ineligible at once.
    await (workers[1] as FleetWorker).stop();
    expect((await t.admin('POST', '/v1/hosts/m-b/decommission')).status).toBe(200);
    const moved = await deploy(t, { spec: spec(svc('one'), svc('two')) });
    expect(moved.body.ok).toBe(true);
    const placed = moved.body.plan.find((p) => p.service === onB);
    expect(placed?.host).toBe('m-a');
    // The decommission also asks the scheduler for a pass, which may have moved it first: then
    // this deploy finds it on m-a already and keeps it there.
    const byScheduler = placed?.change === 'kept';
    expect([placed?.change, placed?.previousHost]).toEqual(byScheduler ? ['kept', 'm-a'] : ['moved', 'm-b']);
    expect(moved.body.hosts.map((h) => [h.host, h.services])).toEqual([['m-a', 2]]);
    expect(byScheduler ? ['applied', 'unchanged'] : ['applied']).toContain(moved.body.hosts[0]?.outcome);
    await waitFor(async () => {
      const now = observedMap(await servicesOf(t));
      return now['one@m-a'] === 'running' && now['two@m-a'] === 'running' && Object.keys(now).length === 2;
    });
  });
});

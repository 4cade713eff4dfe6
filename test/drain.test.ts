import { afterAll, describe, expect, it } from 'vitest';
import type { EligibilityResponse } from '../protocol/admin-eligibility.js';
import type { HostListResponse } from '../protocol/admin-hosts.js';
import type { ApprovalPending } from '../protocol/approvals.js';
import type { DeployResponse, ServiceListResponse } from '../protocol/deployment.js';
import type { OperationDetail, OperationListResponse } from '../protocol/operations.js';
import { corral, startController, waitFor, type TestController } from './controller-fixture.js';
import {
  addWorker,
  LIVENESS_INTERVAL_MS,
  observedMap,
  spec,
  svc,
  type FleetWorker,
} from './deploy-fixture.js';
import { pidsWithMarker } from './fleet-fixture.js';

/**
 * Drain, eligibility and labels against a real controller and real agents (the CLI cases run
 * the built `corral`, `npx tsc -p .` first). A moved service runs on its new host before it is
 * stopped on the old one; at the drain deadline it is stopped whether or not. Processes are
 * counted by the marker on their command lines.
 */
const tag = `drain-${process.pid}`;
const marker = (service: string): string => `MARK-${tag}-${service}`;
const marked = (name: string, labels: Record<string, string>) =>
  svc(name, { args: ['-c', `while true; do sleep 1; done # ${marker(name)}`], placement: { labels } });

const cleanups: (() => Promise<void>)[] = [];
afterAll(async () => {
  for (const c of cleanups.reverse()) await c();
});

let shared: TestController | undefined;
async function controller(): Promise<TestController> {
  if (!shared) {
    shared = await startController({
      heartbeatIntervalMs: LIVENESS_INTERVAL_MS,
      schedule: { tickMs: 200, rescheduleAfterMs: null },
    });
    const t = shared;
    cleanups.push(() => t.close());
  }
  return shared;
}

async function join(t: TestController, name: string, labels: Record<string, string>): Promise<FleetWorker> {
  const w = await addWorker(t, name, { labels });
  cleanups.push(() => w.destroy());
  await waitFor(async () => {
    const { hosts } = (await t.admin<HostListResponse>('GET', '/v1/hosts')).body;
    return hosts.find((h) => h.name === name)?.status === 'online';
  });
  return w;
}

const observed = async (t: TestController) =>
  observedMap((await t.admin<ServiceListResponse>('GET', '/v1/services')).body.services);
const hostView = async (t: TestController, name: string) =>
  (await t.admin<HostListResponse>('GET', '/v1/hosts')).body.hosts.find((h) => h.name === name);
const target = (t: TestController): string[] => ['--url', t.endpoints.admin, '--token', t.adminToken];

/** Every log line of the controller's reschedule operations, oldest first. */
async function rescheduleLog(t: TestController): Promise<string[]> {
  const ops = (await t.admin<OperationListResponse>('GET', '/v1/ops')).body.operations;
  const lines: string[] = [];
  for (const op of ops.filter((o) => o.kind === 'reschedule').reverse()) {
    const detail = (await t.admin<OperationDetail>('GET', `/v1/ops/${op.id}`)).body;
    lines.push(...detail.log.map((l) => l.message));
  }
  return lines;
}

describe('drain', { timeout: 150_000 }, () => {
  it('moves a service make-before-break: it runs on the new host before it stops on the drained one, and runs once after', async () => {
    const t = await controller();
    await join(t, 'dr-a', { pool: 'dr' });
    await join(t, 'dr-b', { pool: 'dr' });
    const solo = marked('dr-solo', { pool: 'dr' });
    const res = await t.admin<DeployResponse>('POST', '/v1/deploy', { spec: spec(solo) });
    expect(res.status).toBe(200);
    const from = res.body.plan[0]?.host ?? '';
    const to = from === 'dr-a' ? 'dr-b' : 'dr-a';
    await waitFor(async () => (await observed(t))[`dr-solo@${from}`] === 'running');
    expect((await pidsWithMarker(marker('dr-solo'))).length).toBe(1);

    const drained = await corral(['controller', 'drain', from, '--deadline', '2m', '--json', ...target(t)]);
    expect(drained.stderr).toBe('');
    expect(drained.code).toBe(0);
    const answer = JSON.parse(drained.stdout) as EligibilityResponse;
    expect(answer).toMatchObject({ host: from, eligibility: 'draining', dryRun: false });
    expect(answer.changes.plan).toEqual([
      { service: 'dr-solo', host: to, change: 'moved', previousHost: from, changed: [], restarts: true },
    ]);

    await waitFor(async () => {
      const seen = await observed(t);
      return seen[`dr-solo@${to}`] === 'running' && seen[`dr-solo@${from}`] === undefined;
    });
    // Stopped on the old host: one process from then on.
    await waitFor(async () => (await pidsWithMarker(marker('dr-solo'))).length === 1);
    const log = await rescheduleLog(t);
    expect(log).toContain(`dr-solo moves from ${from} to ${to}`);
    expect(log).toContain(`dr-solo keeps running on ${from} until it runs on ${to}`);
    expect(log).toContain(`dr-solo stopped on ${from}: its replacement runs`);
    expect(log.indexOf(`dr-solo keeps running on ${from} until it runs on ${to}`)).toBeLessThan(
      log.indexOf(`dr-solo stopped on ${from}: its replacement runs`),
    );
    // Empty, the drained host stays out of placement.
    await waitFor(async () => (await hostView(t, from))?.eligibility === 'ineligible');
    expect((await hostView(t, from))?.drainDeadline).toBeNull();
    for (let i = 0; i < 5; i++) expect((await pidsWithMarker(marker('dr-solo'))).length).toBe(1);

    const table = await corral(['controller', 'hosts', ...target(t)]);
    expect(table.code).toBe(0);
    expect(table.stdout).toMatch(new RegExp(`^${from}\\s.*\\sineligible\\s*$`, 'm'));

    const back = await t.admin<EligibilityResponse>('POST', `/v1/hosts/${from}/eligibility`, {
      eligible: true,
    });
    expect(back.body).toMatchObject({ eligibility: 'eligible', drainDeadline: null });
    // Eligible again, it takes nothing back on its own: placement is stable.
    expect(back.body.changes.plan).toEqual([]);
  });

  it('at the deadline stops the service on the drained host although its replacement never ran', async () => {
    const t = await controller();
    await join(t, 'dl-a', { pool: 'dl' });
    const b = await join(t, 'dl-b', { pool: 'dl' });
    // Only dl-a may take it at first: dl-b is ineligible, and keeps nothing.
    await t.admin('POST', '/v1/hosts/dl-b/eligibility', { eligible: false });
    const solo = marked('dl-solo', { pool: 'dl' });
    const res = await t.admin<DeployResponse>('POST', '/v1/deploy', {
      spec: spec(marked('dr-solo', { pool: 'dr' }), solo),
    });
    expect(res.body.plan.find((p) => p.service === 'dl-solo')?.host).toBe('dl-a');
    await waitFor(async () => (await observed(t))['dl-solo@dl-a'] === 'running');
    // dl-b's agent goes away while the host still counts as online: the replacement cannot start.
    await b.stop();
    await t.admin('POST', '/v1/hosts/dl-b/eligibility', { eligible: true });
    const drained = await t.admin<EligibilityResponse>('POST', '/v1/hosts/dl-a/drain', { deadlineMs: 1500 });
    expect(drained.status).toBe(200);
    expect(drained.body.changes.plan.map((p) => [p.service, p.host])).toEqual([['dl-solo', 'dl-b']]);
    await waitFor(async () => (await pidsWithMarker(marker('dl-solo'))).length === 0);
    const log = await rescheduleLog(t);
    expect(log).toContain('dl-solo keeps running on dl-a until it runs on dl-b');
    expect(log).toContain('dl-solo stopped on dl-a: the drain deadline passed before its replacement ran');
    await waitFor(async () => (await hostView(t, 'dl-a'))?.eligibility === 'ineligible');
  });

  it('waits for approval when approvals.drain is configured', async () => {
    const t = await startController({
      heartbeatIntervalMs: LIVENESS_INTERVAL_MS,
      schedule: { tickMs: 200, rescheduleAfterMs: null },
      approvals: { policy: { drain: 1 } },
    });
    cleanups.push(() => t.close());
    await t.enroll('ap-a');
    const asked = await t.admin<ApprovalPending>('POST', '/v1/hosts/ap-a/drain', { deadlineMs: 60_000 });
    expect(asked.status).toBe(202);
    expect(asked.body.approval).toMatchObject({ action: 'drain', target: 'ap-a', state: 'pending' });
    expect((await hostView(t, 'ap-a'))?.eligibility).toBe('eligible');
    const missing = await t.admin('POST', '/v1/hosts/nope/drain', {});
    expect(missing.status).toBe(404);
  });
});

describe('label', { timeout: 150_000 }, () => {
  it('--dry-run shows the move and changes nothing; the change moves the service and stops it on the old host once it runs', async () => {
    const t = await controller();
    await join(t, 'lb-a', { tier: 'gold' });
    await join(t, 'lb-b', { tier: 'gold' });
    const keep = await t.admin<DeployResponse>('POST', '/v1/deploy', {
      spec: spec(
        marked('dr-solo', { pool: 'dr' }),
        marked('dl-solo', { pool: 'dl' }),
        marked('lb-solo', { tier: 'gold' }),
      ),
      allowPending: true,
    });
    const from = keep.body.plan.find((p) => p.service === 'lb-solo')?.host ?? '';
    const to = from === 'lb-a' ? 'lb-b' : 'lb-a';
    await waitFor(async () => (await observed(t))[`lb-solo@${from}`] === 'running');

    const dry = await corral(['controller', 'label', from, 'tier=tin', '--dry-run', ...target(t)]);
    expect(dry.code).toBe(0);
    expect(dry.stdout).toMatch(/^dry run\s+yes: nothing was changed$/m);
    expect(dry.stdout).toMatch(new RegExp(`^lb-solo\\s+moved\\s+${from}\\s+${to}\\s*$`, 'm'));
    expect((await hostView(t, from))?.labels).toEqual({ tier: 'gold' });

    const real = await corral(['controller', 'label', from, 'tier=tin', 'zone=1', '--json', ...target(t)]);
    expect(real.code).toBe(0);
    expect((JSON.parse(real.stdout) as EligibilityResponse).labels).toEqual({ tier: 'tin', zone: '1' });
    await waitFor(async () => {
      const seen = await observed(t);
      return seen[`lb-solo@${to}`] === 'running' && seen[`lb-solo@${from}`] === undefined;
    });
    await waitFor(async () => (await pidsWithMarker(marker('lb-solo'))).length === 1);
    expect(await rescheduleLog(t)).toContain(`lb-solo stopped on ${from}: its replacement runs`);

    const removed = await corral(['controller', 'label', from, '--remove', 'zone', '--json', ...target(t)]);
    expect((JSON.parse(removed.stdout) as EligibilityResponse).labels).toEqual({ tier: 'tin' });
    const bad = await corral(['controller', 'label', from, ...target(t)]);
    expect(bad.code).toBe(2);
  });
});

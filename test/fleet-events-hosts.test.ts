import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { EventsPage, FleetEvent } from '../protocol/fleet-events.js';
import type { ServiceStatus } from '../protocol/heartbeat.js';
import {
  agentMaterial,
  heartbeatBody,
  postJson,
  startController,
  waitFor,
  workerClient,
  type TestController,
} from './controller-fixture.js';

const INTERVAL_MS = 1_000;
/** The controller's clock, moved by the test (TLS still checks real time). */
let nowMs = Date.now();
const clock = { now: () => nowMs };

let dir: string;
let t: TestController;
const start = (): Promise<TestController> =>
  startController({ dir, clock, heartbeatIntervalMs: INTERVAL_MS, fleetEvents: { sweepEveryMs: 10 } });

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'corral-fleet-hosts-'));
  t = await start();
});
afterAll(async () => {
  await t.close();
  await rm(dir, { recursive: true, force: true });
});

async function allEvents(): Promise<FleetEvent[]> {
  const res = await t.admin<EventsPage>('GET', '/v1/events?since=0&limit=1000');
  expect(res.status).toBe(200);
  return res.body.events;
}

/** `kind host` for the events of one host (service events as `kind host/service from>to`). */
async function story(host: string): Promise<string[]> {
  return (await allEvents())
    .filter((e) => e.host?.name === host)
    .map((e) =>
      e.kind === 'service.state_changed'
        ? `${e.kind} ${e.service ?? ''} ${String(e.data.from)}>${String(e.data.to)}`
        : e.kind,
    );
}

/** Waits until the host's story is `expected`, then a little longer to see nothing more comes. */
async function storyIs(host: string, expected: string[]): Promise<void> {
  await waitFor(async () => (await story(host)).length >= expected.length, 10_000).catch(() => undefined);
  // Sweeps run every 10 ms: fifty of them more must not add anything.
  await new Promise((r) => setTimeout(r, 500));
  expect(await story(host)).toEqual(expected);
}

const svc = (
  name: string,
  state: ServiceStatus['state'],
  lastError: string | null = null,
): ServiceStatus => ({
  name,
  state,
  restarts: 0,
  lastError,
  pid: state === 'running' ? 4242 : null,
  since: null,
});

describe('host and service events', () => {
  it('tells each status change once, from heartbeat age, and none twice across restarts', async () => {
    const a = await t.enroll('evh-a');
    await storyIs('evh-a', ['host.enrolled']);
    let client = workerClient(t.endpoints.worker, agentMaterial(a));
    const beat = async (services: ServiceStatus[] = []) => {
      const res = await postJson(client, '/v1/heartbeat', heartbeatBody(a.hostId, { services }));
      expect(res.status).toBe(200);
    };

    await beat();
    await beat();
    await storyIs('evh-a', ['host.enrolled', 'host.online']);

    // Heartbeats stop: stale after two intervals, offline after three, each told once.
    nowMs += 2 * INTERVAL_MS;
    await storyIs('evh-a', ['host.enrolled', 'host.online', 'host.stale']);
    nowMs += INTERVAL_MS;
    await storyIs('evh-a', ['host.enrolled', 'host.online', 'host.stale', 'host.offline']);
    nowMs += 10 * INTERVAL_MS;
    // The heartbeat's own service changes commit with it; its host.online right after.
    await beat([svc('web', 'running')]);
    const back = ['host.enrolled', 'host.online', 'host.stale', 'host.offline'];
    await storyIs('evh-a', [...back, 'service.state_changed web null>running', 'host.online']);

    // Only state changes count; a service no longer listed is told with `to: null`.
    await beat([svc('web', 'running'), svc('db', 'starting')]);
    await beat([svc('web', 'failed', 'exit 1'), svc('db', 'starting')]);
    await beat([svc('web', 'failed', 'exit 1')]);
    const services = [
      'service.state_changed web null>running',
      'host.online',
      'service.state_changed db null>starting',
      'service.state_changed web running>failed',
      'service.state_changed db starting>null',
    ];
    await storyIs('evh-a', [...back, ...services]);
    const failed = (await allEvents()).find(
      (e) => e.kind === 'service.state_changed' && e.data.to === 'failed',
    );
    expect(failed?.data).toMatchObject({ from: 'running', to: 'failed', lastError: 'exit 1', restarts: 0 });

    // A restart: the first heartbeat rewrites the services, unchanged, and tells nothing.
    await client.close();
    await t.close();
    nowMs += 10 * INTERVAL_MS;
    t = await start();
    client = workerClient(t.endpoints.worker, agentMaterial(a));
    await beat([svc('web', 'failed', 'exit 1')]);
    await storyIs('evh-a', [...back, ...services]);

    // Down while the controller was down: it waits out the intervals itself before telling.
    await client.close();
    await t.close();
    nowMs += 10 * INTERVAL_MS;
    t = await start();
    await storyIs('evh-a', [...back, ...services]);
    nowMs += 2 * INTERVAL_MS;
    await storyIs('evh-a', [...back, ...services, 'host.stale']);

    // Decommissioned: told once, and not again after another restart.
    const res = await t.admin('POST', '/v1/hosts/evh-a/decommission');
    expect(res.status).toBe(200);
    const end = [...back, ...services, 'host.stale', 'host.decommissioned'];
    await storyIs('evh-a', end);
    await t.close();
    t = await start();
    nowMs += 10 * INTERVAL_MS;
    await storyIs('evh-a', end);
    const decommissioned = (await allEvents()).find((e) => e.kind === 'host.decommissioned');
    expect(decommissioned?.data).toMatchObject({ from: 'stale' });
  });

  it('gives every event a cursor that only grows, and pages by it', async () => {
    for (const n of ['evh-p1', 'evh-p2', 'evh-p3']) await t.enroll(n);
    const all = await allEvents();
    const cursors = all.map((e) => e.cursor);
    expect(cursors).toEqual([...cursors].sort((x, y) => x - y));
    expect(new Set(cursors).size).toBe(cursors.length);
    const mid = cursors.at(-3) ?? 0;
    const page = await t.admin<EventsPage>('GET', `/v1/events?since=${mid}&limit=1`);
    expect(page.body.events.map((e) => e.cursor)).toEqual([cursors.at(-2)]);
    expect(page.body).toMatchObject({ cursor: cursors.at(-2), head: cursors.at(-1), truncated: false });

    const future = await t.admin<{ error: { code: string } }>(
      'GET',
      `/v1/events?since=${(cursors.at(-1) ?? 0) + 5}`,
    );
    expect([future.status, future.body.error.code]).toEqual([400, 'CORRAL_ERR_VALIDATION']);
    const bad = await t.admin<{ error: { code: string } }>('GET', '/v1/events?limit=0');
    expect(bad.status).toBe(400);
  });
});

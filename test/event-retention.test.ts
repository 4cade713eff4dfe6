import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { LifecycleEvent } from '../protocol/heartbeat.js';
import {
  agentMaterial,
  heartbeatBody,
  lifecycleEvent,
  postJson,
  startController,
  waitFor,
  workerClient,
  type TestController,
} from './controller-fixture.js';

const DAY_MS = 86_400_000;
const KEEP_PER_HOST = 5;

/** The controller's clock, moved by the test (TLS still checks real time; certificates last a year). */
let nowMs = Date.now();
const clock = { now: () => nowMs };

let t: TestController;
beforeAll(async () => {
  t = await startController({
    clock,
    heartbeatIntervalMs: 30_000,
    eventRetention: { maxAgeMs: DAY_MS, maxPerHost: KEEP_PER_HOST, pruneEveryMs: 100 },
  });
});
afterAll(async () => {
  await t.close();
});

const batch = (tag: string, n: number): LifecycleEvent[] =>
  Array.from({ length: n }, (_, i) => lifecycleEvent({ id: `evt-${tag}-${String(i + 1).padStart(2, '0')}` }));

async function storedIds(hostId: string): Promise<string[]> {
  const rows = await t.db.selectFrom('events').select('event_id').where('host_id', '=', hostId).execute();
  return rows.map((r) => r.event_id).sort();
}

describe('lifecycle event retention', () => {
  it('keeps the newest events per host, prunes by age (quiet hosts too), and still acknowledges everything', async () => {
    const a = await t.enroll('keep-a');
    const b = await t.enroll('keep-b');
    await using clientA = workerClient(t.endpoints.worker, agentMaterial(a));
    await using clientB = workerClient(t.endpoints.worker, agentMaterial(b));

    for (const tag of ['1', '2', '3']) {
      const events = batch(tag, 4);
      const res = await postJson(clientA, '/v1/heartbeat', heartbeatBody(a.hostId, { events }));
      expect(res.status).toBe(200);
      expect(res.body.ackedEventIds).toEqual(events.map((e) => e.id));
      nowMs += 1000;
    }
    // Count: the newest five by arrival (the last heartbeat's four, then the highest id of the one before).
    expect(await storedIds(a.hostId)).toEqual(['evt-2-04', 'evt-3-01', 'evt-3-02', 'evt-3-03', 'evt-3-04']);

    expect(
      (await postJson(clientB, '/v1/heartbeat', heartbeatBody(b.hostId, { events: batch('b', 2) }))).status,
    ).toBe(200);
    expect(await storedIds(b.hostId)).toEqual(['evt-b-01', 'evt-b-02']);

    // Two days on, the quiet host's events go by age through the periodic prune, with no heartbeat of its own.
    nowMs += 2 * DAY_MS;
    await waitFor(async () => (await storedIds(b.hostId)).length === 0);
    await waitFor(async () => (await storedIds(a.hostId)).length === 0);

    // A worker's own (future) event time does not keep an event: age counts from arrival.
    const future = lifecycleEvent({ id: 'evt-future-1', time: new Date(nowMs + 365 * DAY_MS).toISOString() });
    expect(
      (await postJson(clientA, '/v1/heartbeat', heartbeatBody(a.hostId, { events: [future] }))).status,
    ).toBe(200);
    expect(await storedIds(a.hostId)).toEqual(['evt-future-1']);
    nowMs += 2 * DAY_MS;
    await waitFor(async () => (await storedIds(a.hostId)).length === 0);

    const detail = await t.admin<{ recentEvents: unknown[] }>('GET', '/v1/hosts/keep-a');
    expect(detail.body.recentEvents).toEqual([]);
    // Dropped, and counted: 7 over the count, then 5 + 2 + 1 by age.
    const metrics = (await t.admin<string>('GET', '/metrics')).body;
    expect(metrics).toMatch(/^corral_events_pruned_total 15$/m);
  });
});

import { once } from 'node:events';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { DeliveriesResponse } from '../protocol/admin-notify.js';
import type { EventsPage } from '../protocol/fleet-events.js';
import { startController, waitFor, type TestController } from './controller-fixture.js';

const DAY_MS = 86_400_000;
const KEEP = 5;

/** The controller's clock, moved by the test (TLS still checks real time). */
let nowMs = Date.now();
const clock = { now: () => nowMs };

let t: TestController;
beforeAll(async () => {
  t = await startController({
    clock,
    heartbeatIntervalMs: 30_000,
    fleetEvents: {
      retention: { maxAgeMs: DAY_MS, maxCount: KEEP, deliveriesPerWebhook: 2, pruneEveryMs: 50 },
    },
  });
});
afterAll(async () => {
  await t.close();
});

const page = async (since: number): Promise<EventsPage> => {
  const res = await t.admin<EventsPage>('GET', `/v1/events?since=${since}&limit=1000`);
  expect(res.status).toBe(200);
  return res.body;
};
const cursors = async (): Promise<number[]> => (await page(0)).events.map((e) => e.cursor);

describe('fleet event retention', () => {
  it('keeps the newest events by count and drops old ones by age, never reusing a cursor', async () => {
    // Each enrollment is one event (host.enrolled); nothing else happens to these hosts.
    for (let i = 1; i <= 8; i++) {
      await t.enroll(`ret-${i}`);
      nowMs += 1000;
    }
    await waitFor(async () => (await cursors()).length === KEEP);
    expect(await cursors()).toEqual([4, 5, 6, 7, 8]);
    const first = await page(0);
    expect(first).toMatchObject({ head: 8, cursor: 8, truncated: true });
    expect(first.events.map((e) => e.host?.name)).toEqual(['ret-4', 'ret-5', 'ret-6', 'ret-7', 'ret-8']);
    // A reader at 3 lost nothing; one at 2 lost event 3, and is told.
    expect((await page(3)).truncated).toBe(false);
    expect((await page(2)).truncated).toBe(true);

    // Two days on, every event is too old.
    nowMs += 2 * DAY_MS;
    await waitFor(async () => (await cursors()).length === 0);
    expect(await page(8)).toMatchObject({ events: [], head: 8, cursor: 8, truncated: false });
    expect((await page(6)).truncated).toBe(true);

    // The next event continues after the deleted ones.
    await t.enroll('ret-9');
    expect(await cursors()).toEqual([9]);
    expect((await page(8)).truncated).toBe(false);

    const metrics = (await t.admin<string>('GET', '/metrics')).body;
    // 3 over the count, then the 5 kept by age.
    expect(metrics).toMatch(/^corral_fleet_events_pruned_total 8$/m);
  });

  it("keeps a webhook's newest finished deliveries, and none past the age limit", async () => {
    const rx = createServer((req, res) => {
      req.resume();
      req.on('end', () => res.end('ok'));
    });
    rx.listen(0, '127.0.0.1');
    await once(rx, 'listening');
    const url = `http://127.0.0.1:${(rx.address() as AddressInfo).port}/`;
    const added = await t.admin('POST', '/v1/webhooks', { name: 'kept', url, events: ['*'] });
    expect(added.status).toBe(200);
    const log = async () =>
      (await t.admin<DeliveriesResponse>('GET', '/v1/webhooks/kept/deliveries')).body.deliveries;
    for (const n of ['ret-d1', 'ret-d2', 'ret-d3', 'ret-d4']) {
      await t.enroll(n);
      const head = (await page(0)).head;
      // Newest first: this enrollment's delivery is at the top once made, then delivered.
      await waitFor(async () => {
        const [newest] = await log();
        return newest?.eventCursor === head && newest.state === 'delivered';
      });
    }
    await waitFor(async () => (await log()).length === 2);
    const kept = await log();
    expect(kept.map((d) => d.state)).toEqual(['delivered', 'delivered']);
    // The newest two: the last two enrollments' events.
    const events = (await page(0)).events;
    expect(kept.map((d) => d.eventCursor)).toEqual(
      events
        .slice(-2)
        .map((e) => e.cursor)
        .reverse(),
    );

    nowMs += 2 * DAY_MS;
    await waitFor(async () => (await log()).length === 0);
    rx.close();
  });
});

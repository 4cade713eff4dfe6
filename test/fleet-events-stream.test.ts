import { request as httpRequest, type ClientRequest } from 'node:http';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createSseReader } from '../cli/sse-reader.js';
import type { EnrollResponse } from '../protocol/enrollment.js';
import type { EventsPage, FleetEvent } from '../protocol/fleet-events.js';
import {
  agentMaterial,
  heartbeatBody,
  postJson,
  startController,
  waitFor,
  workerClient,
  type TestController,
} from './controller-fixture.js';

/** A small seeded generator, so a failing run's cut points can be replayed (the seed is printed). */
function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let x = Math.imul(a ^ (a >>> 15), 1 | a);
    x = (x + Math.imul(x ^ (x >>> 7), 61 | x)) ^ x;
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296;
  };
}

let dir: string;
let t: TestController;
// The hosts post their heartbeats back to back, faster than a worker's budget allows on a quiet
// machine (429): the budget is not what this file tests.
const start = (): Promise<TestController> =>
  startController({
    dir,
    heartbeatIntervalMs: 30_000,
    heartbeatBudget: 'unlimited',
    fleetEvents: { keepAliveMs: 200 },
  });

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'corral-fleet-stream-'));
  t = await start();
});
afterAll(async () => {
  await t.close();
  await rm(dir, { recursive: true, force: true });
});

async function stored(): Promise<FleetEvent[]> {
  const out: FleetEvent[] = [];
  for (let since = 0; ;) {
    const page = (await t.admin<EventsPage>('GET', `/v1/events?since=${since}&limit=1000`)).body;
    out.push(...page.events);
    if (page.events.length < 1000) return out;
    since = page.cursor;
  }
}

/** Heartbeats whose service flips state each time: one `service.state_changed` per beat. */
async function produce(t: TestController, host: EnrollResponse, beats: number, tag: number): Promise<void> {
  await using client = workerClient(t.endpoints.worker, agentMaterial(host));
  for (let i = 0; i < beats; i++) {
    const state = (i + tag) % 2 === 0 ? 'running' : 'degraded';
    const services = [{ name: 'flip', state, restarts: i, lastError: null, pid: null, since: null }] as const;
    const res = await postJson(
      client,
      '/v1/heartbeat',
      heartbeatBody(host.hostId, { services: [...services] }),
    );
    expect(res.status).toBe(200);
  }
}

interface Follower {
  readonly received: FleetEvent[];
  readonly connections: number;
  /** Resolves once it has received the event with `cursor` (or throws after the timeout). */
  until(cursor: number): Promise<void>;
  stop(): void;
}

/**
 * A follower the way the world treats one: each connection is cut after a random number of
 * bytes (mid-line, mid-event, mid-chunk), and it reconnects with `Last-Event-ID` set to the last
 * event it received whole. It keeps every event it parsed, in order, duplicates included.
 */
function follow(urlOf: () => string, token: string, random: () => number): Follower {
  const received: FleetEvent[] = [];
  let connections = 0;
  let stopped = false;
  let current: ClientRequest | undefined;
  const lastId = (): string => String(received.at(-1)?.cursor ?? 0);

  const once = (): Promise<void> =>
    new Promise<void>((resolve) => {
      const cutAfter = 1 + Math.floor(random() * 4000);
      let seen = 0;
      const reader = createSseReader();
      const req = httpRequest(
        `${urlOf()}/v1/events`,
        {
          headers: {
            authorization: `Bearer ${token}`,
            accept: 'text/event-stream',
            'last-event-id': lastId(),
          },
        },
        (res) => {
          if (res.statusCode !== 200) {
            res.resume();
            res.on('end', resolve);
            return;
          }
          connections++;
          res.setEncoding('utf8');
          res.on('data', (chunk: string) => {
            // Only what arrived before the cut counts: the rest of this chunk is lost with it.
            const take = chunk.slice(0, Math.max(0, cutAfter - seen));
            seen += chunk.length;
            for (const m of reader.push(take)) {
              if (m.event === 'truncated') throw new Error(`stream said events were lost: ${m.data}`);
              received.push(JSON.parse(m.data) as FleetEvent);
            }
            if (seen >= cutAfter) req.destroy();
          });
          res.on('close', resolve);
        },
      );
      current = req;
      req.on('error', () => resolve());
      req.end();
    });

  void (async () => {
    while (!stopped) {
      await once();
      await sleep(5);
    }
  })();

  return {
    received,
    get connections() {
      return connections;
    },
    until: (cursor) => waitFor(() => (received.at(-1)?.cursor ?? 0) >= cursor, 60_000),
    stop() {
      stopped = true;
      current?.destroy();
    },
  };
}

describe('the fleet event stream', () => {
  it('resumes from its cursor after cut connections and a controller restart, nothing lost or repeated', async () => {
    const seed = Math.floor(Math.random() * 2 ** 31);
    console.log(`fleet event stream cut seed ${seed}`);
    const a = await t.enroll('evs-a');
    const b = await t.enroll('evs-b');
    const follower = follow(() => t.endpoints.admin, t.adminToken, mulberry32(seed));

    await Promise.all([produce(t, a, 60, 0), produce(t, b, 60, 1)]);
    // The controller goes away under the follower, and comes back on another port.
    await t.close();
    t = await start();
    // Each host's first state after the restart differs from its last before (compared with the stored one).
    await Promise.all([produce(t, a, 60, 0), produce(t, b, 60, 1)]);

    const all = await stored();
    await follower.until(all.at(-1)?.cursor ?? 0);
    follower.stop();

    expect(all.filter((e) => e.kind === 'service.state_changed')).toHaveLength(240);
    const got = follower.received.map((e) => e.cursor);
    expect(new Set(got).size).toBe(got.length);
    expect(got).toEqual(all.map((e) => e.cursor));
    expect(follower.received).toEqual(all);
    // The cuts really happened: many connections for one stream.
    expect(follower.connections).toBeGreaterThan(10);
  });

  it('starts after Last-Event-ID over `since`, refuses a malformed one, and follows with ?follow=true', async () => {
    const all = await stored();
    const mid = all[Math.floor(all.length / 2)]?.cursor ?? 0;
    const first = async (
      headers: Record<string, string>,
      query: string,
    ): Promise<{ status: number; text: string }> =>
      new Promise((resolve, reject) => {
        const req = httpRequest(
          `${t.endpoints.admin}/v1/events${query}`,
          { headers: { authorization: `Bearer ${t.adminToken}`, ...headers } },
          (res) => {
            let text = '';
            res.setEncoding('utf8');
            res.on('data', (c: string) => {
              text += c;
              if (text.includes('\n\nid:') || res.statusCode !== 200) req.destroy();
            });
            res.on('close', () => resolve({ status: res.statusCode ?? 0, text }));
          },
        );
        req.on('error', reject);
        req.end();
      });
    const resumed = await first({ 'last-event-id': String(mid) }, '?follow=true&since=0');
    expect(resumed.status).toBe(200);
    expect(resumed.text).toMatch(new RegExp(`^retry: 1000\\n\\nid: ${mid + 1}\\nevent: `));
    const bad = await first({ 'last-event-id': '12x' }, '?follow=true');
    expect(bad.status).toBe(400);
    expect(bad.text).toContain('CORRAL_ERR_VALIDATION');
  });
});

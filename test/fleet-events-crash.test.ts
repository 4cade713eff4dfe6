import { spawn, type ChildProcess } from 'node:child_process';
import { createHmac } from 'node:crypto';
import { once } from 'node:events';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { createServer, request as httpRequest, type ClientRequest } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createSseReader } from '../cli/sse-reader.js';
import { initControllerState } from '../controller/index.js';
import { readEndpointsFile } from '../kit/endpoints-file.js';
import type { DeliveriesResponse } from '../protocol/admin-notify.js';
import type { EventsPage, FleetEvent } from '../protocol/fleet-events.js';
import { freePort } from './rsyslog-fixtures.js';
import { waitFor } from './controller-fixture.js';

/**
 * The promises of the event stream and the webhook outbox against the way the world breaks
 * them: a real `corral controller serve` is SIGKILLed at random moments while hosts enroll,
 * a follower streams and a slow receiver takes deliveries, then started again, several times.
 * Afterwards the follower holds exactly the stored events and the receiver got every one of
 * them at least once, each signed.
 */
const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const SECRET = 'crash-test-secret-0123456789abcdef';
const ROUNDS = 4;

let dir: string;
let state: string;
let adminPort: number;
let token: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'corral-events-crash-'));
  state = join(dir, 'controller');
  await initControllerState({ stateDir: state });
  token = (await readFile(join(state, 'admin-token'), 'utf8')).trim();
  adminPort = await freePort();
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

const adminUrl = (): string => `http://127.0.0.1:${adminPort}`;

async function serve(): Promise<{ child: ChildProcess; exited: Promise<unknown> }> {
  await rm(join(state, 'run', 'endpoints.json'), { force: true });
  const child = spawn(
    process.execPath,
    [
      join(ROOT, 'bin', 'corral.js'),
      'controller',
      'serve',
      '--state-dir',
      state,
      '--admin-listen',
      `127.0.0.1:${adminPort}`,
      '--worker-listen',
      '127.0.0.1:0',
      '--log-level',
      'warn',
      '--heartbeat-interval',
      '10m',
    ],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
  let stderr = '';
  child.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
  const exited = once(child, 'exit');
  await waitFor(async () => {
    if (child.exitCode !== null || child.signalCode !== null) throw new Error(`serve exited: ${stderr}`);
    return (await readEndpointsFile(state).catch(() => undefined)) !== undefined;
  }, 60_000);
  return { child, exited };
}

async function admin<T>(method: 'GET' | 'POST', path: string, body?: unknown): Promise<T> {
  const res = await request(`${adminUrl()}${path}`, {
    method,
    headers: {
      authorization: `Bearer ${token}`,
      ...(body !== undefined && { 'content-type': 'application/json' }),
    },
    body: body === undefined ? null : JSON.stringify(body),
  });
  const text = await res.body.text();
  if (res.statusCode !== 200) throw new Error(`${path}: ${res.statusCode} ${text}`);
  return JSON.parse(text) as T;
}

async function stored(): Promise<FleetEvent[]> {
  const out: FleetEvent[] = [];
  for (let since = 0; ;) {
    const page = await admin<EventsPage>('GET', `/v1/events?since=${since}&limit=1000`);
    out.push(...page.events);
    if (page.events.length < 1000) return out;
    since = page.cursor;
  }
}

describe('fleet events across controller crashes', () => {
  it('loses and repeats nothing on the stream, and delivers every event at least once', async () => {
    // A receiver that takes its time, so kills land while deliveries are in flight.
    const got: { headers: Record<string, string | string[] | undefined>; body: string }[] = [];
    const rx = createServer((req, res) => {
      let body = '';
      req.setEncoding('utf8');
      req.on('data', (c: string) => (body += c));
      req.on('end', () => {
        got.push({ headers: req.headers, body });
        setTimeout(() => res.end('ok'), Math.floor(Math.random() * 80));
      });
    });
    rx.listen(0, '127.0.0.1');
    await once(rx, 'listening');
    const rxUrl = `http://127.0.0.1:${(rx.address() as AddressInfo).port}/in`;

    // A follower that reconnects to the same address with the last id it received whole.
    const received: FleetEvent[] = [];
    let following = true;
    let current: ClientRequest | undefined;
    const follower = (async () => {
      while (following) {
        await new Promise<void>((done) => {
          const reader = createSseReader();
          const req = httpRequest(
            `${adminUrl()}/v1/events?follow=true`,
            {
              headers: {
                authorization: `Bearer ${token}`,
                'last-event-id': String(received.at(-1)?.cursor ?? 0),
              },
            },
            (res) => {
              res.setEncoding('utf8');
              res.on('data', (chunk: string) => {
                for (const m of reader.push(chunk)) {
                  if (m.event !== 'truncated') received.push(JSON.parse(m.data) as FleetEvent);
                }
              });
              res.on('close', done);
            },
          );
          current = req;
          req.on('error', () => done());
          req.end();
        });
        await sleep(20);
      }
    })();

    let served = await serve();
    await admin('POST', '/v1/webhooks', { name: 'rx', url: rxUrl, events: ['*'], secret: SECRET });
    let enrolled = 0;
    for (let round = 0; round < ROUNDS; round++) {
      if (round > 0) served = await serve();
      const killAt = 400 + Math.floor(Math.random() * 2000);
      const stop = Date.now() + killAt;
      // Four enrollers at once, each an event (and a delivery) when it commits.
      const producing = Promise.all(
        [0, 1, 2, 3].map(async (p) => {
          for (let i = 0; Date.now() < stop; i++) {
            await admin('POST', '/v1/enroll', { name: `crash-${round}-${p}-${i}`, address: '127.0.0.1' })
              .then(() => enrolled++)
              .catch(() => undefined /* the controller died under this one: it committed or not */);
          }
        }),
      );
      await sleep(killAt);
      served.child.kill('SIGKILL');
      await served.exited;
      await producing;
    }
    served = await serve();
    try {
      const all = await stored();
      const hosts = await admin<{ hosts: { name: string }[] }>('GET', '/v1/hosts?limit=1000');
      // Every committed enrollment was told once, and only those.
      const told = all.filter((e) => e.kind === 'host.enrolled').map((e) => e.host?.name);
      expect(told.sort()).toEqual(hosts.hosts.map((h) => h.name).sort());
      expect(told.length).toBeGreaterThanOrEqual(enrolled);

      await waitFor(() => (received.at(-1)?.cursor ?? 0) >= (all.at(-1)?.cursor ?? 0), 60_000);
      expect(received.map((e) => e.cursor)).toEqual(all.map((e) => e.cursor));
      expect(received).toEqual(all);

      await waitFor(async () => {
        const log = await admin<DeliveriesResponse>('GET', '/v1/webhooks/rx/deliveries?limit=1000');
        return log.deliveries.length === all.length && log.deliveries.every((d) => d.state === 'delivered');
      }, 60_000);
      const ids = new Set<string>();
      for (const r of got) {
        const ts = String(r.headers['corral-timestamp']);
        const mac = createHmac('sha256', SECRET).update(`${ts}.${r.body}`).digest('hex');
        expect(r.headers['corral-signature']).toBe(`v1=${mac}`);
        ids.add(String(r.headers['corral-event-id']));
      }
      expect([...ids].sort()).toEqual(all.map((e) => e.id).sort());
      console.log(
        `${all.length} events over ${ROUNDS} kills: ${got.length} POSTs for ${ids.size} events (${got.length - ids.size} sent again)`,
      );
    } finally {
      following = false;
      current?.destroy();
      served.child.kill('SIGTERM');
      await served.exited;
      await follower;
      rx.closeAllConnections();
      rx.close();
    }
  });
});

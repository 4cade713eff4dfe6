import { createHmac, timingSafeEqual } from 'node:crypto';
import { once } from 'node:events';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { AuditEntry } from '../protocol/admin-audit.js';
import type {
  DeliveriesResponse,
  WebhookAddResponse,
  WebhookListResponse,
} from '../protocol/admin-notify.js';
import type { FleetEvent } from '../protocol/fleet-events.js';
import {
  agentMaterial,
  heartbeatBody,
  postJson,
  startController,
  waitFor,
  workerClient,
  type TestController,
} from './controller-fixture.js';

type Err = { error: { code: string; message: string } };

interface Received {
  readonly headers: IncomingHttpHeaders;
  readonly body: string;
}

/** A webhook receiver on loopback: a real HTTP server that answers `status(n)` to its n-th request. */
async function receiver(
  status: (n: number, body: string) => number = () => 200,
  port = 0,
): Promise<{ url: string; port: number; got: Received[]; close(): Promise<void> }> {
  const got: Received[] = [];
  const server: Server = createServer((req, res) => {
    let body = '';
    req.setEncoding('utf8');
    req.on('data', (c: string) => (body += c));
    req.on('end', () => {
      got.push({ headers: req.headers, body });
      res.statusCode = status(got.length, body);
      res.end('ok');
    });
  });
  server.listen(port, '127.0.0.1');
  await once(server, 'listening');
  const bound = (server.address() as AddressInfo).port;
  return {
    url: `http://127.0.0.1:${bound}/hooks/corral`,
    port: bound,
    got,
    async close() {
      server.closeAllConnections();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}

/**
 * What a receiver must do (README, "Webhooks"): HMAC-SHA256 of `timestamp.body` with the
 * secret, compared in constant time, and the timestamp within five minutes of its own clock.
 */
function verify(r: Received, secret: string): FleetEvent {
  const timestamp = String(r.headers['corral-timestamp']);
  const signature = String(r.headers['corral-signature']);
  expect(timestamp).toMatch(/^\d+$/);
  expect(Math.abs(Date.now() / 1000 - Number(timestamp))).toBeLessThan(300);
  const expected = `v1=${createHmac('sha256', secret).update(`${timestamp}.${r.body}`).digest('hex')}`;
  expect(signature.length).toBe(expected.length);
  expect(timingSafeEqual(Buffer.from(signature), Buffer.from(expected))).toBe(true);
  const event = JSON.parse(r.body) as FleetEvent;
  expect(r.headers['corral-event-id']).toBe(event.id);
  expect(r.headers['corral-event-kind']).toBe(event.kind);
  expect(r.headers['content-type']).toBe('application/json');
  return event;
}

const SECRET = 'receiver-secret-0123456789abcdef';
let dir: string;
let t: TestController;
const start = (): Promise<TestController> =>
  startController({
    dir,
    heartbeatIntervalMs: 30_000,
    fleetEvents: { webhooks: { baseMs: 20, capMs: 80, timeoutMs: 2_000 } },
  });

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'corral-webhooks-'));
  t = await start();
});
afterAll(async () => {
  await t.close();
  await rm(dir, { recursive: true, force: true });
});

const add = (body: Record<string, unknown>) =>
  t.admin<WebhookAddResponse & Err>('POST', '/v1/webhooks', body);
const deliveries = async (name: string) =>
  (await t.admin<DeliveriesResponse>('GET', `/v1/webhooks/${name}/deliveries?limit=1000`)).body.deliveries;

describe('webhooks', () => {
  it('POSTs each wanted event, signed so that the receiver can verify it', async () => {
    const rx = await receiver();
    const res = await add({ name: 'ops', url: rx.url, events: ['host.*'], secret: SECRET });
    expect(res.status).toBe(200);
    expect(res.body.secret).toBeUndefined();
    const host = await t.enroll('wh-a');
    await using client = workerClient(t.endpoints.worker, agentMaterial(host));
    const services = [
      { name: 'web', state: 'running' as const, restarts: 0, lastError: null, pid: 7, since: null },
    ];
    expect((await postJson(client, '/v1/heartbeat', heartbeatBody(host.hostId, { services }))).status).toBe(
      200,
    );

    await waitFor(() => rx.got.length >= 2);
    const events = rx.got.map((r) => verify(r, SECRET));
    // host.* only: the service event is not for this webhook.
    expect(events.map((e) => [e.kind, e.host?.name])).toEqual([
      ['host.enrolled', 'wh-a'],
      ['host.online', 'wh-a'],
    ]);
    expect(rx.got.every((r) => r.headers['corral-webhook'] === 'ops')).toBe(true);
    // A tampered body or another secret does not verify.
    const [first] = rx.got;
    if (!first) throw new Error('no delivery');
    const forged = createHmac('sha256', 'another-secret-0123456789').update(
      `${String(first.headers['corral-timestamp'])}.${first.body}`,
    );
    expect(`v1=${forged.digest('hex')}`).not.toBe(first.headers['corral-signature']);

    await waitFor(async () => (await deliveries('ops')).every((d) => d.state === 'delivered'));
    const log = await deliveries('ops');
    expect(log.map((d) => [d.kind, d.state, d.attempts, d.lastStatus])).toEqual([
      ['host.online', 'delivered', 1, 200],
      ['host.enrolled', 'delivered', 1, 200],
    ]);
    await rx.close();
    expect((await t.admin('DELETE', '/v1/webhooks/ops')).status).toBe(200);
  });

  it('retries a failing receiver with backoff until it takes the delivery, and counts it', async () => {
    // The first three attempts get 500, then it works: four POSTs of the same event.
    const rx = await receiver((n) => (n <= 3 ? 500 : 204));
    expect(
      (await add({ name: 'flaky', url: rx.url, events: ['host.enrolled'], secret: SECRET })).status,
    ).toBe(200);
    await t.enroll('wh-flaky');
    await waitFor(async () => (await deliveries('flaky'))[0]?.state === 'delivered', 30_000);
    const [d] = await deliveries('flaky');
    expect(d).toMatchObject({
      kind: 'host.enrolled',
      state: 'delivered',
      attempts: 4,
      lastStatus: 204,
      lastError: null,
    });
    expect(rx.got).toHaveLength(4);
    const ids = new Set(rx.got.map((r) => verify(r, SECRET).id));
    expect(ids.size).toBe(1);
    const scrape = async (): Promise<string> => (await t.admin<string>('GET', '/metrics')).body;
    const metrics = await scrape();
    expect(metrics).toMatch(/^corral_webhook_deliveries_total\{webhook="flaky",result="retry"\} 3$/m);
    expect(metrics).toMatch(/^corral_webhook_deliveries_total\{webhook="flaky",result="delivered"\} 1$/m);
    // The outbox gauge is a count the dispatcher refreshes at most once a second, on its next
    // pass: it may still show the delivery that just went out.
    await waitFor(async () => /^corral_webhook_outbox\{webhook="flaky"\} 0$/m.test(await scrape()));
    await rx.close();
    await t.admin('DELETE', '/v1/webhooks/flaky');
  });

  it('keeps undelivered events across a controller restart while the receiver is down, then delivers them', async () => {
    const rx = await receiver();
    const { port, url } = rx;
    await rx.close(); // down: connections are refused
    expect((await add({ name: 'later', url, events: ['*'], secret: SECRET })).status).toBe(200);
    for (const n of ['wh-r1', 'wh-r2', 'wh-r3']) await t.enroll(n);
    await waitFor(async () => {
      const log = await deliveries('later');
      return log.length === 3 && log.every((d) => d.attempts >= 2 && d.state === 'pending');
    });
    expect((await deliveries('later'))[0]?.lastError).toMatch(/ECONNREFUSED|CORRAL_ERR_UNAVAILABLE/);

    // Both sides go down; the controller comes back first, then the receiver on its old port.
    await t.close();
    t = await start();
    const back = await receiver(() => 200, port);
    await waitFor(() => back.got.length >= 3, 30_000);
    const names = back.got.map((r) => verify(r, SECRET).host?.name);
    expect(new Set(names)).toEqual(new Set(['wh-r1', 'wh-r2', 'wh-r3']));
    await waitFor(async () => (await deliveries('later')).every((d) => d.state === 'delivered'));
    await back.close();
    await t.admin('DELETE', '/v1/webhooks/later');
  });

  it('gives a delivery up once the retry window is over', async () => {
    await t.close();
    t = await startController({
      dir,
      heartbeatIntervalMs: 30_000,
      fleetEvents: { webhooks: { baseMs: 20, capMs: 40, giveUpAfterMs: 400 } },
    });
    const rx = await receiver(() => 503);
    expect((await add({ name: 'dead', url: rx.url, events: ['host.enrolled'], secret: SECRET })).status).toBe(
      200,
    );
    await t.enroll('wh-dead');
    await waitFor(async () => (await deliveries('dead'))[0]?.state === 'failed', 30_000);
    const [d] = await deliveries('dead');
    expect(d?.attempts).toBeGreaterThan(1);
    expect(d).toMatchObject({ lastStatus: 503, lastError: 'answered 503', nextAttemptAt: null });
    const list = (await t.admin<WebhookListResponse>('GET', '/v1/webhooks')).body.webhooks;
    expect(list.find((w) => w.name === 'dead')).toMatchObject({ failed: 1, pending: 0, delivered: 0 });
    await rx.close();
    await t.admin('DELETE', '/v1/webhooks/dead');
  });

  it('checks targets when added and never shows or audits the secret', async () => {
    const refused = async (body: Record<string, unknown>, code = 'CORRAL_ERR_WEBHOOK_TARGET_REFUSED') => {
      const res = await add({ name: 'x', events: ['*'], secret: SECRET, ...body });
      expect([res.status, res.body.error.code]).toEqual([400, code]);
      return res.body.error.message;
    };
    expect(await refused({ url: 'http://203.0.113.7/hook' })).toMatch(/--allow-http/);
    await refused({ url: 'ftp://127.0.0.1/hook' });
    await refused({ url: 'https://user:pw@example.net/hook' });
    await refused({ url: 'not a url' });
    await refused({ url: 'https://example.net/#frag' });
    await refused({ url: `https://example.net/${'é'.repeat(1100)}` });
    await refused({ url: `https://example.net/${'a'.repeat(2100)}` }, 'CORRAL_ERR_VALIDATION');
    await refused({ url: 'https://example.net/', events: ['host.nope'] }, 'CORRAL_ERR_VALIDATION');
    await refused({ url: 'https://example.net/', secret: 'short' }, 'CORRAL_ERR_VALIDATION');

    expect(
      (await add({ name: 'plain', url: 'http://203.0.113.7/hook', events: ['*'], allowHttp: true })).status,
    ).toBe(200);
    const made = await add({
      name: 'tls',
      url: 'https://hooks.example.net/T0/B0/tok',
      events: ['release.rolled_back'],
    });
    expect(made.status).toBe(200);
    const secret = made.body.secret ?? '';
    expect(secret).toMatch(/^corral_whsec_[A-Za-z0-9_-]{43}$/);
    const taken = await add({ name: 'tls', url: 'https://hooks.example.net/', events: ['*'] });
    expect([taken.status, taken.body.error.code]).toEqual([409, 'CORRAL_ERR_NAME_TAKEN']);

    const list = await t.admin<WebhookListResponse>('GET', '/v1/webhooks');
    expect(list.body.webhooks.find((w) => w.name === 'tls')).toMatchObject({
      url: 'https://hooks.example.net/T0/B0/tok',
      events: ['release.rolled_back'],
      allowHttp: false,
    });
    const shown =
      JSON.stringify(list.body) + JSON.stringify(await t.admin('GET', '/v1/webhooks/tls/deliveries'));
    const audit = JSON.stringify(
      (await t.admin<{ entries: AuditEntry[] }>('GET', '/v1/audit?limit=1000')).body,
    );
    for (const text of [shown, audit]) {
      expect(text).not.toContain(secret);
      expect(text).not.toContain(SECRET);
    }
    // The audit log names the origin only: the path may be the receiver's own token.
    expect(audit).toContain('"origin":"https://hooks.example.net"');
    expect(audit).not.toContain('T0/B0/tok');

    const removed = await t.admin<{ removed: string }>('DELETE', '/v1/webhooks/tls');
    expect(removed.body.removed).toBe('tls');
    const again = await t.admin<Err>('DELETE', '/v1/webhooks/tls');
    expect([again.status, again.body.error.code]).toEqual([404, 'CORRAL_ERR_NOT_FOUND']);
    await t.admin('DELETE', '/v1/webhooks/plain');
  });
});

import { once } from 'node:events';
import type { ServerResponse } from 'node:http';
import { createServer, type Server } from 'node:https';
import type { AddressInfo } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createCa, serverTlsOptions, type TlsMaterial } from '../../pki/index.js';
import { ErrorCode, isCorralError, RemoteError } from '../../protocol/errors.js';
import { createControllerClient, retryAfterMs } from './controller-client.js';
import type { RenewRequest } from '../../protocol/enrollment.js';
import type { HeartbeatRequest } from '../../protocol/heartbeat.js';

let server: Server;
let endpoint: string;
let agentMaterial: TlsMaterial;
/** What the controller does with the next request: hold it open, or answer with a status and body. */
let next: { hold: true } | { status: number; body: string; headers?: Record<string, string> } = {
  hold: true,
};
const held: ServerResponse[] = [];
let arrived: (() => void) | undefined;
/** Requests the real controller answered. */
let answered = 0;
/** A server with a `controller` certificate from another CA, and the requests it got. */
let impostor: Server;
let impostorEndpoint: string;
let impostorRequests = 0;
/** A loopback port nothing listens on. */
let closedEndpoint: string;
const renewBody = { role: 'agent', csrPem: 'x' } as unknown as RenewRequest;

beforeAll(async () => {
  const ca = await createCa();
  const controller = await ca.issue({
    role: 'controller',
    commonName: 'controller',
    ipAddresses: ['127.0.0.1'],
  });
  const agent = await ca.issue({ role: 'agent', hostId: 'h-agent', commonName: 'h-agent' });
  agentMaterial = { caPem: ca.certPem, certPem: agent.certPem, keyPem: agent.keyPem };
  const tls = serverTlsOptions({ caPem: ca.certPem, certPem: controller.certPem, keyPem: controller.keyPem });
  server = createServer(tls, (req, res) => {
    req.resume();
    answered++;
    if ('hold' in next) held.push(res);
    else res.writeHead(next.status, { 'content-type': 'application/json', ...next.headers }).end(next.body);
    arrived?.();
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  endpoint = `127.0.0.1:${(server.address() as AddressInfo).port}`;

  const otherCa = await createCa();
  const fake = await otherCa.issue({
    role: 'controller',
    commonName: 'controller',
    ipAddresses: ['127.0.0.1'],
  });
  impostor = createServer(
    serverTlsOptions({ caPem: ca.certPem, certPem: fake.certPem, keyPem: fake.keyPem }),
    (req, res) => {
      impostorRequests++;
      req.resume();
      res.writeHead(503).end('{}');
    },
  );
  impostor.listen(0, '127.0.0.1');
  await once(impostor, 'listening');
  impostorEndpoint = `127.0.0.1:${(impostor.address() as AddressInfo).port}`;

  const gone = createServer(tls);
  gone.listen(0, '127.0.0.1');
  await once(gone, 'listening');
  closedEndpoint = `127.0.0.1:${(gone.address() as AddressInfo).port}`;
  gone.close();
  await once(gone, 'close');
});

afterAll(() => {
  for (const res of held.splice(0)) res.destroy();
  server.close();
  impostor.close();
});

const conflict = {
  status: 409,
  body: JSON.stringify({ error: { code: ErrorCode.CONFLICT, message: 'no' } }),
};

describe('failover along several controller addresses', () => {
  it('moves past a refused address at once and stays with the one that answers', async () => {
    next = conflict;
    const moves: string[] = [];
    const client = createControllerClient([closedEndpoint, endpoint], agentMaterial, {
      onFailover: (from, to) => moves.push(`${from}->${to}`),
    });
    try {
      const before = answered;
      await expect(client.renew(renewBody)).rejects.toMatchObject({ code: ErrorCode.CONFLICT, status: 409 });
      await expect(client.renew(renewBody)).rejects.toMatchObject({ code: ErrorCode.CONFLICT });
      expect(answered - before).toBe(2);
      expect(client.current()).toBe(endpoint);
      expect(moves).toEqual([`${closedEndpoint}->${endpoint}`]);
    } finally {
      await client.close();
    }
  });

  it("checks a heartbeat answer's controller list against the schema, and takes a new list keeping the current address", async () => {
    const answer = (controllers: unknown): string =>
      JSON.stringify({
        ackedEventIds: [],
        intervalMs: 1000,
        serverTime: new Date().toISOString(),
        controllers,
      });
    const client = createControllerClient([closedEndpoint, endpoint], agentMaterial);
    try {
      const hb = {} as HeartbeatRequest;
      next = { status: 200, body: answer([{ worker: endpoint, syslog: '127.0.0.1:6514' }]) };
      expect((await client.heartbeat(hb)).controllers).toEqual([
        { worker: endpoint, syslog: '127.0.0.1:6514' },
      ]);
      const tooMany = Array.from({ length: 17 }, (_, i) => ({ worker: `10.0.0.${i}:8771` }));
      for (const bad of [tooMany, [], [{ worker: 'no port' }], [{ worker: endpoint, extra: 1 }]]) {
        next = { status: 200, body: answer(bad) };
        await expect(client.heartbeat(hb)).rejects.toMatchObject({ code: ErrorCode.VALIDATION });
      }
      expect(client.current()).toBe(endpoint);
      client.setAddresses(['10.0.0.9:8771', endpoint]);
      expect(client.current()).toBe(endpoint);
      expect(client.addresses()).toEqual(['10.0.0.9:8771', endpoint]);
      client.setAddresses([closedEndpoint]);
      expect(client.current()).toBe(closedEndpoint);
    } finally {
      await client.close();
    }
  });

  it('an HTTP error answer from a live controller does not move the client', async () => {
    next = { status: 503, body: '{}' };
    const client = createControllerClient([endpoint, closedEndpoint], agentMaterial);
    try {
      await expect(client.renew(renewBody)).rejects.toMatchObject({ status: 503 });
      expect(client.current()).toBe(endpoint);
    } finally {
      await client.close();
    }
  });

  it('skips a server with another CA: no request reaches it, and alone it is refused', async () => {
    next = conflict;
    const client = createControllerClient([impostorEndpoint, endpoint], agentMaterial);
    try {
      await expect(client.renew(renewBody)).rejects.toMatchObject({ code: ErrorCode.CONFLICT });
      expect(client.current()).toBe(endpoint);
    } finally {
      await client.close();
    }
    const alone = createControllerClient([impostorEndpoint, closedEndpoint], agentMaterial);
    try {
      const failure = await alone.renew(renewBody).catch((e: unknown) => e);
      expect(failure).not.toBeInstanceOf(RemoteError);
      expect(failure).toBeInstanceOf(Error);
    } finally {
      await alone.close();
    }
    expect(impostorRequests).toBe(0);
  });
});

describe("agent's controller client", () => {
  it('a second close() resolves only after the first has drained the request in flight', async () => {
    next = { hold: true };
    const client = createControllerClient(endpoint, agentMaterial);
    const order: string[] = [];
    const reached = new Promise<void>((resolve) => (arrived = resolve));
    const call = client.renew(renewBody).catch((e: unknown) => {
      order.push(`answered ${e instanceof RemoteError ? e.status : 'other'}`);
    });
    await reached;
    const first = client.close().then(() => order.push('first close'));
    const second = client.close().then(() => order.push('second close'));
    await sleep(100);
    expect(order).toEqual([]);
    held.shift()?.writeHead(503, { 'content-type': 'application/json' }).end('{}');
    await Promise.all([call, first, second]);
    expect(order).toEqual(['answered 503', 'first close', 'second close']);
  });

  it('refuses a request after close() with CORRAL_ERR_CLOSED', async () => {
    const client = createControllerClient(endpoint, agentMaterial);
    await client.close();
    const failure = await client.renew(renewBody).catch((e: unknown) => e);
    expect(isCorralError(failure, ErrorCode.CLOSED)).toBe(true);
  });

  it("turns the controller's error envelope into a RemoteError with its code, status and Retry-After", async () => {
    next = {
      status: 429,
      body: JSON.stringify({ error: { code: ErrorCode.RATE_LIMITED, message: 'slow down' } }),
      headers: { 'retry-after': '7' },
    };
    const client = createControllerClient(endpoint, agentMaterial);
    try {
      const failure = await client.renew(renewBody).catch((e: unknown) => e);
      expect(failure).toBeInstanceOf(RemoteError);
      expect(failure).toMatchObject({
        code: ErrorCode.RATE_LIMITED,
        status: 429,
        retryAfterMs: 7000,
        message: '/v1/renew: slow down',
      });
      next = { status: 502, body: '<html>bad gateway</html>' };
      const bare = await client.renew(renewBody).catch((e: unknown) => e);
      expect(bare).toMatchObject({
        code: ErrorCode.UNAVAILABLE,
        status: 502,
        message: '/v1/renew: status 502',
      });
    } finally {
      await client.close();
    }
  });
});

describe('Retry-After from the controller', () => {
  const now = Date.parse('2026-01-01T00:00:00Z');
  it('reads whole seconds and HTTP dates, capped at ten minutes, never negative', () => {
    expect(retryAfterMs('3', now)).toBe(3000);
    expect(retryAfterMs(['2', '9'], now)).toBe(2000);
    expect(retryAfterMs('Thu, 01 Jan 2026 00:00:07 GMT', now)).toBe(7000);
    expect(retryAfterMs('Wed, 31 Dec 2025 23:59:00 GMT', now)).toBe(0);
    expect(retryAfterMs('999999', now)).toBe(600_000);
  });

  it('ignores what it cannot read', () => {
    expect(retryAfterMs(undefined, now)).toBeUndefined();
    expect(retryAfterMs('soon', now)).toBeUndefined();
    expect(retryAfterMs('-1', now)).toBeUndefined();
  });
});

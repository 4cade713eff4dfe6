import { once } from 'node:events';
import type { ServerResponse } from 'node:http';
import { createServer, type Server } from 'node:https';
import type { AddressInfo } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createCa, serverTlsOptions, type TlsMaterial } from '../pki/index.js';
import { ErrorCode, isCorralError } from '../protocol/errors.js';
import { createWorkerClient, type WorkerTarget } from './agent-client.js';

let server: Server;
let target: WorkerTarget;
let clientMaterial: TlsMaterial;
/** Responses the agent is holding open; each test answers them when it wants the call to end. */
const held: ServerResponse[] = [];
let arrived: (() => void) | undefined;

beforeAll(async () => {
  const ca = await createCa();
  const agent = await ca.issue({
    role: 'agent',
    hostId: 'h-close',
    commonName: 'h-close',
    ipAddresses: ['127.0.0.1'],
  });
  const client = await ca.issue({ role: 'controller-client', commonName: 'controller-client' });
  clientMaterial = { caPem: ca.certPem, certPem: client.certPem, keyPem: client.keyPem };
  server = createServer(
    serverTlsOptions({ caPem: ca.certPem, certPem: agent.certPem, keyPem: agent.keyPem }),
    (req, res) => {
      req.resume();
      held.push(res);
      arrived?.();
    },
  );
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as AddressInfo;
  target = { hostId: 'h-close', address: '127.0.0.1', port, fingerprints: [agent.fingerprint] };
});

afterAll(() => {
  for (const res of held.splice(0)) res.destroy();
  server.close();
});

describe('worker client close()', () => {
  it('a second close() resolves only after the first has drained the call in flight', async () => {
    const client = createWorkerClient(clientMaterial);
    const order: string[] = [];
    const reached = new Promise<void>((resolve) => (arrived = resolve));
    const call = client.call(target, { method: 'GET', path: '/v1/health' }).then((r) => {
      order.push(`answered ${r.statusCode}`);
    });
    await reached;
    const first = client.close().then(() => order.push('first close'));
    const second = client.close().then(() => order.push('second close'));
    // Give a close that does not wait every chance to resolve before the agent answers.
    await sleep(100);
    expect(order).toEqual([]);
    held.shift()?.writeHead(200, { 'content-type': 'application/json' }).end('{"ok":true}');
    await Promise.all([call, first, second]);
    expect(order).toEqual(['answered 200', 'first close', 'second close']);
  });

  it('refuses a call after close() with CORRAL_ERR_CLOSED', async () => {
    const client = createWorkerClient(clientMaterial);
    await client.close();
    const failure = await client.call(target, { method: 'GET', path: '/v1/health' }).catch((e: unknown) => e);
    expect(isCorralError(failure, ErrorCode.CLOSED)).toBe(true);
    expect(held).toEqual([]);
  });
});

import { request as httpsRequest } from 'node:https';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { clientTlsOptions, createCa, serverTlsOptions, type TlsMaterial } from '../pki/index.js';
import { CorralError, ErrorCode } from '../protocol/errors.js';
import { createHttpsJsonApi, type HttpsJsonApi } from './https-json-api.js';
import { checkPinnedPeer } from './pinned-peer-check.js';

interface Reply {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: { error?: { code: string; message: string } } & Record<string, unknown>;
}

let api: HttpsJsonApi;
let port = 0;
let pinned: TlsMaterial;
let other: TlsMaterial;
let serverFingerprint = '';
const afterSend: string[] = [];

function call(
  material: TlsMaterial,
  method: string,
  path: string,
  body?: string,
  headers = {},
): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = httpsRequest(
      {
        host: '127.0.0.1',
        port,
        method,
        path,
        agent: false,
        ...clientTlsOptions(material, { roles: ['agent'], fingerprints: [serverFingerprint] }),
        headers: {
          ...(body !== undefined && {
            'content-type': 'application/json',
            'content-length': Buffer.byteLength(body),
          }),
          ...headers,
        },
      },
      (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (text += c));
        res.on('end', () =>
          resolve({
            status: res.statusCode ?? 0,
            headers: res.headers,
            body: JSON.parse(text) as Reply['body'],
          }),
        );
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

beforeAll(async () => {
  const ca = await createCa();
  const server = await ca.issue({
    role: 'agent',
    hostId: 'h1',
    commonName: 'h1',
    ipAddresses: ['127.0.0.1'],
  });
  serverFingerprint = server.fingerprint;
  const client = await ca.issue({ role: 'controller-client', commonName: 'controller-client' });
  const unpinned = await ca.issue({ role: 'controller-client', commonName: 'controller-client' });
  pinned = { caPem: ca.certPem, certPem: client.certPem, keyPem: client.keyPem };
  other = { caPem: ca.certPem, certPem: unpinned.certPem, keyPem: unpinned.keyPem };
  api = createHttpsJsonApi({
    https: serverTlsOptions({ caPem: ca.certPem, certPem: server.certPem, keyPem: server.keyPem }),
    log: pino({ level: 'silent' }),
    bodyLimit: 64,
    guard: (req) =>
      void checkPinnedPeer(req, {
        role: 'controller-client',
        fingerprint: () => client.fingerprint,
        guarded: 'test',
      }),
  });
  api.route({
    method: 'POST',
    path: '/echo',
    parse: (b) => {
      if (typeof b !== 'object' || b === null || typeof (b as { n?: unknown }).n !== 'number') {
        throw new CorralError(ErrorCode.VALIDATION, 'body: /n: must be a number');
      }
      return b as { n: number };
    },
    handle: async ({ body }) => ({
      status: 202,
      body: { n: body.n + 1 },
      afterSend: () => afterSend.push('sent'),
    }),
  });
  api.route({
    method: 'POST',
    path: '/big',
    bodyLimit: 1024,
    handle: async ({ body }) => ({ status: 200, body: { got: JSON.stringify(body).length } }),
  });
  api.route({
    method: 'GET',
    path: '/family',
    // A package's own coded error carries no status: not for a client, so a generic 500.
    handle: async () => {
      throw new CorralError(
        'CORRAL_ERR_SOMETHING_INTERNAL' as ErrorCode,
        '/secret/path/state.json is damaged',
        {},
      );
    },
  });
  await api.listen('127.0.0.1', 0);
  const address = api.server.address();
  port = typeof address === 'object' && address ? address.port : 0;
});

afterAll(async () => {
  await api.close();
});

describe('https JSON API (kit/https-json-api.ts, real TLS)', () => {
  it('routes, parses and answers JSON, and runs afterSend once the answer is out', async () => {
    const res = await call(pinned, 'POST', '/echo?x=1', JSON.stringify({ n: 41 }));
    expect(res.status).toBe(202);
    expect(res.body).toEqual({ n: 42 });
    expect(res.headers['content-type']).toBe('application/json; charset=utf-8');
    expect(afterSend).toEqual(['sent']);
  });

  it('answers every refusal with the one envelope and a stable code', async () => {
    const cases: [string, string, string | undefined, Record<string, string>, number, string][] = [
      ['GET', '/nope', undefined, {}, 404, ErrorCode.NOT_FOUND],
      ['GET', '/echo', undefined, {}, 404, ErrorCode.NOT_FOUND],
      ['POST', '/echo', JSON.stringify({ n: 'x' }), {}, 400, ErrorCode.VALIDATION],
      ['POST', '/echo', '{"n":', {}, 400, ErrorCode.BAD_REQUEST],
      ['POST', '/echo', '{"__proto__":{"n":1},"n":1}', {}, 400, ErrorCode.BAD_REQUEST],
      ['POST', '/echo', JSON.stringify({ n: 1, pad: 'x'.repeat(100) }), {}, 413, ErrorCode.PAYLOAD_TOO_LARGE],
      [
        'POST',
        '/echo',
        'n=1',
        { 'content-type': 'application/x-www-form-urlencoded' },
        400,
        ErrorCode.BAD_REQUEST,
      ],
      ['GET', '/family', undefined, {}, 500, ErrorCode.INTERNAL],
    ];
    for (const [method, path, body, headers, status, code] of cases) {
      const res = await call(pinned, method, path, body, headers);
      expect({ method, path, body, status: res.status, code: res.body.error?.code }).toEqual({
        method,
        path,
        body,
        status,
        code,
      });
    }
    const family = await call(pinned, 'GET', '/family');
    expect(family.body.error?.message).toBe('internal error');
    // A route's own larger limit applies to it.
    const big = await call(pinned, 'POST', '/big', JSON.stringify({ pad: 'x'.repeat(500) }));
    expect(big.status).toBe(200);
  });

  it('refuses an unpinned caller before routing, and closes its connection', async () => {
    for (const path of ['/echo', '/nope']) {
      const res = await call(other, 'POST', path, JSON.stringify({ n: 1 }));
      expect(res.status).toBe(403);
      expect(res.body.error?.code).toBe('CORRAL_ERR_PIN_MISMATCH');
      expect(res.headers.connection).toBe('close');
    }
  });
});

import Fastify from 'fastify';
import { Type } from '@sinclair/typebox';
import { describe, expect, it } from 'vitest';
import { CorralError, ErrorCode } from '../../protocol/errors.js';
import { installErrorEnvelope } from './error-envelope.js';

async function app() {
  const a = Fastify({ bodyLimit: 64 });
  installErrorEnvelope(a);
  a.post(
    '/v',
    { schema: { body: Type.Object({ n: Type.Integer() }, { additionalProperties: false }) } },
    async () => ({ ok: true }),
  );
  a.get('/conflict', async () => {
    throw new CorralError(ErrorCode.NAME_TAKEN, 'name web-1 is taken');
  });
  a.get('/boom', async () => {
    throw new Error('secret /var/lib/corral path');
  });
  await a.ready();
  return a;
}

describe('error envelope', () => {
  it('names the field on a schema failure', async () => {
    const res = await (await app()).inject({ method: 'POST', url: '/v', payload: { n: 'x' } });
    expect(res.statusCode).toBe(400);
    expect(res.json()).toEqual({
      error: { code: ErrorCode.VALIDATION, message: expect.stringContaining('/n') },
    });
  });

  it('keeps a CorralError code and status', async () => {
    const res = await (await app()).inject({ method: 'GET', url: '/conflict' });
    expect(res.statusCode).toBe(409);
    expect(res.json()).toEqual({ error: { code: ErrorCode.NAME_TAKEN, message: 'name web-1 is taken' } });
  });

  it('hides internal detail', async () => {
    const res = await (await app()).inject({ method: 'GET', url: '/boom' });
    expect(res.statusCode).toBe(500);
    expect(res.body).not.toContain('/var/lib');
    expect(res.json()).toEqual({ error: { code: ErrorCode.INTERNAL, message: 'internal error' } });
  });

  it('answers oversize bodies and unknown routes in the envelope', async () => {
    const a = await app();
    const big = await a.inject({ method: 'POST', url: '/v', payload: { n: 1, pad: 'x'.repeat(200) } });
    expect(big.statusCode).toBe(413);
    expect(big.json().error.code).toBe(ErrorCode.PAYLOAD_TOO_LARGE);
    const missing = await a.inject({ method: 'GET', url: '/nope' });
    expect(missing.json()).toEqual({ error: { code: ErrorCode.NOT_FOUND, message: 'no such route' } });
  });
});

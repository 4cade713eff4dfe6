import Fastify from 'fastify';
import { Type } from '@sinclair/typebox';
import { describe, expect, it } from 'vitest';
import { CorralError, ErrorCode } from '../../protocol/errors.js';
import { installErrorEnvelope } from './error-envelope.js';

/** A package's own family (as ControllerError is): for its callers, not for clients. */
class LocalError extends CorralError<typeof ErrorCode.STATE_DAMAGED> {}

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
  a.get('/local', async () => {
    throw new LocalError(ErrorCode.STATE_DAMAGED, '/var/lib/corral/corral.db is damaged');
  });
  a.get('/pin', async () => {
    throw new CorralError('CORRAL_ERR_PIN_MISMATCH', 'caller is not the pinned one', { status: 403 });
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

  it("answers a package family's error as internal, without its message", async () => {
    const res = await (await app()).inject({ method: 'GET', url: '/local' });
    expect(res.statusCode).toBe(500);
    expect(res.json()).toEqual({ error: { code: ErrorCode.INTERNAL, message: 'internal error' } });
  });

  it('sends a code of another registry with the status it was given', async () => {
    const res = await (await app()).inject({ method: 'GET', url: '/pin' });
    expect(res.statusCode).toBe(403);
    expect(res.json()).toEqual({
      error: { code: 'CORRAL_ERR_PIN_MISMATCH', message: 'caller is not the pinned one' },
    });
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

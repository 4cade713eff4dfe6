import type { Server as HttpsServer } from 'node:https';
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { JoinRequest, JoinResponse } from '../../protocol/enrollment.js';
import { CorralError, ErrorCode } from '../../protocol/errors.js';
import type { Enrollment } from '../fleet/enrollment.js';

/** Joins being signed at once at most; more get a 503 (signing is CPU work). */
export const MAX_CONCURRENT_JOINS = 32;

/**
 * `POST /v1/join` on the join listener (server-authenticated TLS, no client certificate):
 * redeems a single-use join token for the worker's two CSRs, recording the address the
 * request came from beside the one the worker claims. The worker has already checked this
 * server's chain against its CA pin before sending the token.
 */
export const joinRoute: FastifyPluginAsyncTypebox<{ enrollment: Enrollment }, HttpsServer> = async (
  app,
  opts,
) => {
  let inFlight = 0;
  app.post(
    '/v1/join',
    { schema: { body: JoinRequest, response: { 200: JoinResponse } } },
    async (request) => {
      if (inFlight >= MAX_CONCURRENT_JOINS)
        throw new CorralError(ErrorCode.UNAVAILABLE, 'too many joins at once; retry');
      inFlight++;
      try {
        // request.ip is the peer of this connection (no proxy is trusted on this listener).
        return await opts.enrollment.join(request.body, { source: request.ip });
      } finally {
        inFlight--;
      }
    },
  );
  // Worker routes exist here too, so a caller without a certificate gets the same 403 as anywhere.
  for (const url of ['/v1/heartbeat', '/v1/renew', '/v1/bundle-written']) {
    app.post(url, async () => {
      throw new CorralError(ErrorCode.FORBIDDEN, 'client certificate is not accepted here');
    });
  }
};

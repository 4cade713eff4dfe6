import type { Server as HttpsServer } from 'node:https';
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { RenewRequest, RenewResponse } from '../../protocol/enrollment.js';
import type { Renewal } from '../fleet/renewal.js';
import { workerPeer } from '../http/worker-auth.js';

/**
 * `POST /v1/renew`: a worker's agent, over its current pinned identity, sends a CSR for its
 * own or its updater's certificate and gets the new certificate back.
 */
export const renewRoute: FastifyPluginAsyncTypebox<{ renewal: Renewal }, HttpsServer> = async (app, opts) => {
  app.post(
    '/v1/renew',
    { schema: { body: RenewRequest, response: { 200: RenewResponse } } },
    async (request) => opts.renewal.renew(workerPeer(request), request.body),
  );
};

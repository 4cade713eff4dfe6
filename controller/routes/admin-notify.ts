import type { Server as HttpServer } from 'node:http';
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import {
  DeliveriesQuery,
  DeliveriesResponse,
  WebhookAddRequest,
  WebhookAddResponse,
  WebhookListResponse,
  WebhookNameParams,
  WebhookRemoveResponse,
} from '../../protocol/admin-notify.js';
import type { WebhookStore } from '../events/webhook-store.js';
import { adminActor } from '../http/admin-auth.js';

export interface AdminNotifyRoutesOptions {
  readonly webhooks: WebhookStore;
}

/**
 * Webhooks: `POST /v1/webhooks` (target checked, audited; the secret is in the answer only
 * when the controller made it), `GET /v1/webhooks`, `DELETE /v1/webhooks/:name`,
 * `GET /v1/webhooks/:name/deliveries?limit=N` (newest first).
 */
export const adminNotifyRoutes: FastifyPluginAsyncTypebox<AdminNotifyRoutesOptions, HttpServer> = async (
  app,
  { webhooks },
) => {
  app.post(
    '/v1/webhooks',
    { schema: { body: WebhookAddRequest, response: { 200: WebhookAddResponse } } },
    async (request) => webhooks.add(request.body, adminActor(request)),
  );

  app.get('/v1/webhooks', { schema: { response: { 200: WebhookListResponse } } }, async () => ({
    webhooks: await webhooks.list(),
  }));

  app.delete(
    '/v1/webhooks/:name',
    { schema: { params: WebhookNameParams, response: { 200: WebhookRemoveResponse } } },
    async (request) => webhooks.remove(request.params.name, adminActor(request)),
  );

  app.get(
    '/v1/webhooks/:name/deliveries',
    {
      schema: {
        params: WebhookNameParams,
        querystring: DeliveriesQuery,
        response: { 200: DeliveriesResponse },
      },
    },
    async (request) => webhooks.deliveries(request.params.name, request.query.limit),
  );
};

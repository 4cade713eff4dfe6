import type { Server as HttpServer } from 'node:http';
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import {
  OperatorCreateRequest,
  OperatorCreateResponse,
  OperatorListResponse,
  OperatorNameParams,
  OperatorRevokeResponse,
} from '../../protocol/operators.js';
import { adminActor } from '../http/admin-auth.js';
import type { OperatorStore } from '../operators/operator-store.js';

export interface OperatorRouteOptions {
  readonly operators: OperatorStore;
}

/**
 * Operators (scope `admin`): create (the token or certificate key is in this answer only),
 * list, revoke (every credential of the name; their open connections are closed) and rotate.
 */
export const adminOperatorRoutes: FastifyPluginAsyncTypebox<OperatorRouteOptions, HttpServer> = async (
  app,
  { operators },
) => {
  app.get('/v1/operators', { schema: { response: { 200: OperatorListResponse } } }, async () => ({
    operators: await operators.list(),
  }));

  app.post(
    '/v1/operators',
    { schema: { body: OperatorCreateRequest, response: { 200: OperatorCreateResponse } } },
    async (request) => operators.create(request.body, adminActor(request)),
  );

  app.post(
    '/v1/operators/:name/revoke',
    { schema: { params: OperatorNameParams, response: { 200: OperatorRevokeResponse } } },
    async (request) => ({
      operators: await operators.revoke(request.params.name, adminActor(request), request.raw.socket),
    }),
  );

  app.post(
    '/v1/operators/:name/rotate',
    { schema: { params: OperatorNameParams, response: { 200: OperatorCreateResponse } } },
    async (request) => operators.rotate(request.params.name, adminActor(request), request.raw.socket),
  );
};

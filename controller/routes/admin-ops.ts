import type { Server as HttpServer } from 'node:http';
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { CorralError, ErrorCode } from '../../protocol/errors.js';
import {
  OperationDetail,
  OperationDetailQuery,
  OperationListQuery,
  OperationListResponse,
  OperationParams,
  OperationView,
} from '../../protocol/operations.js';
import type { Operations } from '../deploy/operations.js';
import type { RolloutControl } from '../deploy/halted-rollouts.js';
import { adminActor } from '../http/admin-auth.js';
import { scopeAllows } from '../../protocol/operators.js';

/**
 * Operations: the newest first, and one with its steps and log (`afterSeq` to follow it);
 * `POST /v1/ops/:id/resume` runs a halted rollout's untouched hosts (answering once it ends),
 * `POST /v1/ops/:id/cancel` ends it `cancelled`.
 */
export const adminOpsRoutes: FastifyPluginAsyncTypebox<
  { operations: Operations; rollouts?: RolloutControl | undefined },
  HttpServer
> = async (app, { operations, rollouts }) => {
  app.get(
    '/v1/ops',
    { schema: { querystring: OperationListQuery, response: { 200: OperationListResponse } } },
    async (request) => ({ operations: await operations.list(request.query.limit) }),
  );

  app.get(
    '/v1/ops/:id',
    {
      schema: {
        params: OperationParams,
        querystring: OperationDetailQuery,
        response: { 200: OperationDetail },
      },
    },
    async (request) => {
      const detail = await operations.detail(request.params.id, request.query.afterSeq);
      if (!detail) throw new CorralError(ErrorCode.NOT_FOUND, `no operation ${request.params.id}`);
      return detail;
    },
  );

  for (const verb of ['resume', 'cancel'] as const) {
    app.post(
      `/v1/ops/:id/${verb}`,
      { schema: { params: OperationParams, response: { 200: OperationView } } },
      async (request) => {
        if (!rollouts) throw new CorralError(ErrorCode.NOT_FOUND, 'this controller has no halted rollouts');
        // The route needs `deploy`; an update's rollout also needs `update`, as pushing it did.
        const kind = await rollouts.kindOf(request.params.id);
        const scopes = request.operator?.scopes ?? [];
        if (!scopeAllows(scopes, kind)) {
          throw new CorralError(
            ErrorCode.SCOPE,
            `this needs the ${kind} scope; you have ${scopes.join(', ')}`,
          );
        }
        return rollouts[verb](request.params.id, adminActor(request));
      },
    );
  }
};

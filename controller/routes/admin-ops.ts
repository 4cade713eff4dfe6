import type { Server as HttpServer } from 'node:http';
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { CorralError, ErrorCode } from '../../protocol/errors.js';
import {
  OperationDetail,
  OperationDetailQuery,
  OperationListQuery,
  OperationListResponse,
  OperationParams,
} from '../../protocol/operations.js';
import type { Operations } from '../deploy/operations.js';

/** Operations: the newest first, and one with its steps and log (`afterSeq` to follow it). */
export const adminOpsRoutes: FastifyPluginAsyncTypebox<{ operations: Operations }, HttpServer> = async (
  app,
  { operations },
) => {
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
};

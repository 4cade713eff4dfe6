import type { Server as HttpServer } from 'node:http';
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import {
  ApprovalListResponse,
  ApprovalParams,
  ApprovalRejectRequest,
  ApprovalView,
} from '../../protocol/approvals.js';
import type { ApprovalStore } from '../approvals/approval-store.js';
import { adminActor } from '../http/admin-auth.js';

/** Approvals: list and show (`read`), approve and reject (`approve`), cancel (the requester). */
export const adminApprovalRoutes: FastifyPluginAsyncTypebox<
  { approvals: ApprovalStore },
  HttpServer
> = async (app, { approvals }) => {
  app.get('/v1/approvals', { schema: { response: { 200: ApprovalListResponse } } }, async () => ({
    approvals: await approvals.list(),
  }));
  app.get(
    '/v1/approvals/:id',
    { schema: { params: ApprovalParams, response: { 200: ApprovalView } } },
    async (request) => approvals.get(request.params.id),
  );
  app.post(
    '/v1/approvals/:id/approve',
    { schema: { params: ApprovalParams, response: { 200: ApprovalView } } },
    async (request) =>
      approvals.approve(request.params.id, adminActor(request), { socket: request.raw.socket }),
  );
  app.post(
    '/v1/approvals/:id/reject',
    { schema: { params: ApprovalParams, body: ApprovalRejectRequest, response: { 200: ApprovalView } } },
    async (request) => approvals.reject(request.params.id, adminActor(request), request.body.reason),
  );
  app.post(
    '/v1/approvals/:id/cancel',
    { schema: { params: ApprovalParams, response: { 200: ApprovalView } } },
    async (request) => approvals.cancel(request.params.id, adminActor(request)),
  );
};

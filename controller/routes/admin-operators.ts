import type { Server as HttpServer } from 'node:http';
import type { Socket } from 'node:net';
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import {
  OperatorCreateRequest,
  OperatorCreateResponse,
  OperatorListResponse,
  OperatorNameParams,
  OperatorRevokeResponse,
} from '../../protocol/operators.js';
import { ApprovalPending, type ApprovedOperatorChange } from '../../protocol/approvals.js';
import { gatedAnswer, type ApprovalGate } from '../approvals/approval-gate.js';
import { operatorApprovalTarget } from '../approvals/approval-executors.js';
import { adminActor } from '../http/admin-auth.js';
import type { OperatorStore } from '../operators/operator-store.js';

export interface OperatorRouteOptions {
  readonly operators: OperatorStore;
  /**
   * When `operators` needs approval, a change becomes a pending approval (202). An approved
   * revoke runs at approval; an approved create or rotate runs when its requester asks again,
   * so the new secret is shown to them only.
   */
  readonly gate?: ApprovalGate | undefined;
}

/**
 * Operators (scope `admin`): create (the token or certificate key is in this answer only),
 * list, revoke (every credential of the name; their open connections are closed) and rotate.
 */
export const adminOperatorRoutes: FastifyPluginAsyncTypebox<OperatorRouteOptions, HttpServer> = async (
  app,
  { operators, gate },
) => {
  app.get('/v1/operators', { schema: { response: { 200: OperatorListResponse } } }, async () => ({
    operators: await operators.list(),
  }));

  const gated = async <T>(
    change: ApprovedOperatorChange,
    actor: string,
    socket: Socket,
    now: () => Promise<T>,
  ) =>
    gate
      ? gate.pass(
          { action: 'operators', target: operatorApprovalTarget(change), body: change, actor, socket },
          now,
        )
      : { ran: await now() };

  app.post(
    '/v1/operators',
    {
      schema: {
        body: OperatorCreateRequest,
        response: { 200: OperatorCreateResponse, 202: ApprovalPending },
      },
    },
    async (request, reply) => {
      const actor = adminActor(request);
      return gatedAnswer(
        reply,
        await gated({ change: 'create', create: request.body }, actor, request.raw.socket, () =>
          operators.create(request.body, actor),
        ),
      );
    },
  );

  app.post(
    '/v1/operators/:name/revoke',
    {
      schema: {
        params: OperatorNameParams,
        response: { 200: OperatorRevokeResponse, 202: ApprovalPending },
      },
    },
    async (request, reply) => {
      const actor = adminActor(request);
      const name = request.params.name;
      return gatedAnswer(
        reply,
        await gated({ change: 'revoke', name }, actor, request.raw.socket, async () => ({
          operators: await operators.revoke(name, actor, request.raw.socket),
        })),
      );
    },
  );

  app.post(
    '/v1/operators/:name/rotate',
    {
      schema: {
        params: OperatorNameParams,
        response: { 200: OperatorCreateResponse, 202: ApprovalPending },
      },
    },
    async (request, reply) => {
      const actor = adminActor(request);
      const name = request.params.name;
      return gatedAnswer(
        reply,
        await gated({ change: 'rotate', name }, actor, request.raw.socket, () =>
          operators.rotate(name, actor, request.raw.socket),
        ),
      );
    },
  );
};

import type { Server as HttpServer } from 'node:http';
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import type { Kysely } from 'kysely';
import {
  ADMIN_ROLLBACK_PATH,
  AdminRollbackBody,
  AdminRollbackParams,
  AdminRollbackResponse,
} from '../../protocol/admin-update.js';
import { ApprovalPending, type ApprovedRollback } from '../../protocol/approvals.js';
import { CorralError, ErrorCode } from '../../protocol/errors.js';
import { gatedAnswer, type ApprovalGate } from '../approvals/approval-gate.js';
import { rollbackApprovalTarget } from '../approvals/approval-executors.js';
import type { ControllerDatabase } from '../db/schema.js';
import { findHostByName } from '../fleet/host-store.js';
import { adminActor } from '../http/admin-auth.js';
import type { ReleaseUpdater } from '../release/update-operation.js';

export interface RollbackRouteOptions {
  readonly updater: ReleaseUpdater;
  /** Where an unknown host is told apart before a request is recorded for it. */
  readonly readDb: Kysely<ControllerDatabase>;
  /** When `update` needs approval, a rollback becomes a pending `update` request (202). */
  readonly gate?: ApprovalGate | undefined;
}

/**
 * `POST /v1/hosts/:name/rollback`: the host's updater puts its previous release back, as an
 * operation. It changes what the host runs, so it waits for approval as a push does (action
 * `update`, target `rollback HOST`; one host, so `update: { all: true }` lets it through).
 */
export const adminRollbackRoutes: FastifyPluginAsyncTypebox<RollbackRouteOptions, HttpServer> = async (
  app,
  o,
) => {
  app.post(
    ADMIN_ROLLBACK_PATH,
    {
      schema: {
        params: AdminRollbackParams,
        body: AdminRollbackBody,
        response: { 200: AdminRollbackResponse, 202: ApprovalPending },
      },
    },
    async (request, reply) => {
      const name = request.params.name;
      const actor = adminActor(request);
      const now = () => o.updater.rollback(name, actor);
      if (!o.gate || o.gate.required('update', { all: false }) === 0) return now();
      const row = await findHostByName(o.readDb, name);
      if (!row || row.decommissioned_at !== null)
        throw new CorralError(ErrorCode.NOT_FOUND, `no host named ${name}`);
      const body: ApprovedRollback = { rollback: name };
      return gatedAnswer(
        reply,
        await o.gate.pass(
          { action: 'update', target: rollbackApprovalTarget(name), body, actor, all: false },
          now,
        ),
      );
    },
  );
};

import type { Server as HttpServer } from 'node:http';
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import type { Kysely } from 'kysely';
import {
  DeployRequest,
  DeployResponse,
  MAX_DEPLOYMENT_SPEC_BYTES,
  ServiceListQuery,
  ServiceListResponse,
  ServiceTeardownRequest,
  ServiceTeardownResponse,
} from '../../protocol/deployment.js';
import type { ControllerDatabase } from '../db/schema.js';
import type { Deployer } from '../deploy/deployer.js';
import type { DestructiveActions } from '../fleet/destructive-actions.js';
import { listPending, listServiceViews } from '../deploy/service-views.js';
import type { Liveness } from '../fleet/host-store.js';
import { adminActor } from '../http/admin-auth.js';
import { ApprovalPending } from '../../protocol/approvals.js';
import { gatedAnswer, type ApprovalGate } from '../approvals/approval-gate.js';
import { teardownApprovalTarget } from '../approvals/approval-executors.js';

export interface DeployRouteOptions {
  readonly deployer: Deployer;
  /** Teardown (with the backup taken first for a teardown of everything, when configured). */
  readonly destructive: Pick<DestructiveActions, 'teardown'>;
  readonly db: Kysely<ControllerDatabase>;
  live(): Liveness;
  /** When `teardown` needs approval, a teardown becomes a pending approval (202). */
  readonly gate?: ApprovalGate | undefined;
}

/** A spec of MAX_DEPLOYMENT_SPEC_BYTES as YAML grows a little as JSON; room for that. */
const DEPLOY_BODY_LIMIT_BYTES = 2 * MAX_DEPLOYMENT_SPEC_BYTES;

/** Deploy, the services view, and teardown. */
export const adminDeployRoutes: FastifyPluginAsyncTypebox<DeployRouteOptions, HttpServer> = async (
  app,
  o,
) => {
  app.post(
    '/v1/deploy',
    {
      bodyLimit: DEPLOY_BODY_LIMIT_BYTES,
      schema: { body: DeployRequest, response: { 200: DeployResponse } },
    },
    async (request) =>
      o.deployer.deploy(request.body.spec, {
        dryRun: request.body.dryRun ?? false,
        allowPending: request.body.allowPending ?? false,
        rollout: request.body.rollout,
        actor: adminActor(request),
      }),
  );

  app.get(
    '/v1/services',
    { schema: { querystring: ServiceListQuery, response: { 200: ServiceListResponse } } },
    async (request) => {
      const services = await listServiceViews(o.db, o.live(), request.query);
      const whole = request.query.host === undefined && request.query.state === undefined;
      return whole ? { services, pending: await listPending(o.db) } : { services };
    },
  );

  app.post(
    '/v1/teardown',
    {
      schema: {
        body: ServiceTeardownRequest,
        response: { 200: ServiceTeardownResponse, 202: ApprovalPending },
      },
    },
    async (request, reply) => {
      const actor = adminActor(request);
      const filter = request.body;
      const now = () => o.destructive.teardown(filter, actor);
      if (!o.gate) return now();
      const target = teardownApprovalTarget(filter);
      return gatedAnswer(reply, await o.gate.pass({ action: 'teardown', target, body: filter, actor }, now));
    },
  );
};

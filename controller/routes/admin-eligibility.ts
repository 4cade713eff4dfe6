import type { Server as HttpServer } from 'node:http';
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import {
  DrainRequest,
  EligibilityRequest,
  EligibilityResponse,
  LabelRequest,
} from '../../protocol/admin-eligibility.js';
import { HostNameParams } from '../../protocol/admin-hosts.js';
import { ApprovalPending } from '../../protocol/approvals.js';
import { CorralError, ErrorCode } from '../../protocol/errors.js';
import { gatedAnswer, type ApprovalGate } from '../approvals/approval-gate.js';
import { drainHost, relabelHost, setEligibility, type EligibilityDeps } from '../deploy/host-eligibility.js';
import { adminActor } from '../http/admin-auth.js';

export interface EligibilityRouteOptions extends EligibilityDeps {
  /** When drain needs approval, a request becomes a pending approval (202), as decommission does. */
  readonly gate?: ApprovalGate | undefined;
}

/** The body an approved drain runs with. */
export interface DrainApprovalBody {
  readonly name: string;
  readonly deadlineMs?: number | undefined;
}

/** Drain, eligibility and labels of one host. */
export const adminEligibilityRoutes: FastifyPluginAsyncTypebox<EligibilityRouteOptions, HttpServer> = async (
  app,
  o,
) => {
  app.post(
    '/v1/hosts/:name/drain',
    {
      schema: {
        params: HostNameParams,
        body: DrainRequest,
        response: { 200: EligibilityResponse, 202: ApprovalPending },
      },
    },
    async (request, reply) => {
      const name = request.params.name;
      const deadlineMs = request.body.deadlineMs;
      const actor = adminActor(request);
      const now = () => drainHost(o, name, deadlineMs, actor);
      if (!o.gate || o.gate.required('drain') === 0) return now();
      const exists = await o.db
        .selectFrom('hosts')
        .select('id')
        .where('name', '=', name)
        .where('decommissioned_at', 'is', null)
        .executeTakeFirst();
      if (!exists) throw new CorralError(ErrorCode.NOT_FOUND, `no host named ${name}`);
      const body: DrainApprovalBody = { name, ...(deadlineMs !== undefined && { deadlineMs }) };
      return gatedAnswer(reply, await o.gate.pass({ action: 'drain', target: name, body, actor }, now));
    },
  );

  app.post(
    '/v1/hosts/:name/eligibility',
    { schema: { params: HostNameParams, body: EligibilityRequest, response: { 200: EligibilityResponse } } },
    async (request) => setEligibility(o, request.params.name, request.body.eligible, adminActor(request)),
  );

  app.post(
    '/v1/hosts/:name/labels',
    { schema: { params: HostNameParams, body: LabelRequest, response: { 200: EligibilityResponse } } },
    async (request) => relabelHost(o, request.params.name, request.body, adminActor(request)),
  );
};

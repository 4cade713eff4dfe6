import type { Server as HttpServer } from 'node:http';
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import {
  CheckRequest,
  CheckResponse,
  DecommissionResponse,
  DEFAULT_HOST_PAGE_LIMIT,
  HostDetail,
  HostListQuery,
  HostListResponse,
  HostNameParams,
} from '../../protocol/admin-hosts.js';
import { CorralError, ErrorCode } from '../../protocol/errors.js';
import type { Kysely } from 'kysely';
import type { ControllerDatabase } from '../db/schema.js';
import type { DestructiveActions } from '../fleet/destructive-actions.js';
import { checkFleet, type FleetCheckDeps } from '../fleet/fleet-check.js';
import { hostDetail, listHostPage, type Liveness } from '../fleet/host-store.js';
import { adminActor } from '../http/admin-auth.js';
import { ApprovalPending } from '../../protocol/approvals.js';
import { gatedAnswer, type ApprovalGate } from '../approvals/approval-gate.js';

export interface HostRouteOptions {
  /** The list and the detail are read here (the read-only connection). */
  readonly readDb: Kysely<ControllerDatabase>;
  live(): Liveness;
  /** Decommission (with the backup taken first when backups are configured). */
  readonly destructive: Pick<DestructiveActions, 'decommission'>;
  readonly check: Omit<FleetCheckDeps, 'live'>;
  /** When decommission needs approval, a request becomes a pending approval (202). */
  readonly gate?: ApprovalGate | undefined;
}

/** Hosts: list, one in full, decommission, and the reachability check. */
export const adminHostRoutes: FastifyPluginAsyncTypebox<HostRouteOptions, HttpServer> = async (app, o) => {
  app.get(
    '/v1/hosts',
    {
      schema: { querystring: HostListQuery, response: { 200: HostListResponse } },
      // JSON.stringify, not the schema's compiled serializer: toHostView sets every field of a
      // view from typed or schema-checked columns (labels and metrics are checked as they are
      // decoded), so the bytes are the same, and the compiled one took four times the CPU on a
      // page of 500 (it tells each nullable field's branch by validating it) and built the body
      // from many small strings, flattened again to count and write it.
      serializerCompiler: () => (data) => JSON.stringify(data),
    },
    async (request) => {
      const { status, limit, cursor } = request.query;
      return listHostPage(o.readDb, o.live(), {
        limit: limit ?? DEFAULT_HOST_PAGE_LIMIT,
        cursor,
        status,
      });
    },
  );

  app.get(
    '/v1/hosts/:name',
    { schema: { params: HostNameParams, response: { 200: HostDetail } } },
    async (request) => {
      const detail = await hostDetail(o.readDb, request.params.name, o.live());
      if (!detail) throw new CorralError(ErrorCode.NOT_FOUND, `no host named ${request.params.name}`);
      return detail;
    },
  );

  app.post(
    '/v1/hosts/:name/decommission',
    { schema: { params: HostNameParams, response: { 200: DecommissionResponse, 202: ApprovalPending } } },
    async (request, reply) => {
      const name = request.params.name;
      const actor = adminActor(request);
      const now = () => o.destructive.decommission(name, actor);
      if (!o.gate || o.gate.required('decommission') === 0) return now();
      if (!(await hostDetail(o.readDb, name, o.live())))
        throw new CorralError(ErrorCode.NOT_FOUND, `no host named ${name}`);
      return gatedAnswer(
        reply,
        await o.gate.pass({ action: 'decommission', target: name, body: { name }, actor }, now),
      );
    },
  );

  app.post(
    '/v1/check',
    { schema: { body: CheckRequest, response: { 200: CheckResponse } } },
    async (request) => ({
      results: await checkFleet({ ...o.check, live: o.live() }, request.body.timeoutMs),
    }),
  );
};

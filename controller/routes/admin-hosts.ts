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
import { decommissionHost } from '../fleet/decommission.js';
import { checkFleet } from '../fleet/fleet-check.js';
import { hostDetail, listHostPage } from '../fleet/host-store.js';
import { decommissionDeps, type AdminContext } from '../http/admin-context.js';
import { adminActor } from '../http/admin-auth.js';

/** Hosts: list, one in full, decommission, and the reachability check. */
export const adminHostRoutes: FastifyPluginAsyncTypebox<{ ctx: AdminContext }, HttpServer> = async (
  app,
  { ctx },
) => {
  app.get(
    '/v1/hosts',
    { schema: { querystring: HostListQuery, response: { 200: HostListResponse } } },
    async (request) => {
      const { status, limit, cursor } = request.query;
      return listHostPage(ctx.readDb, ctx.live(), {
        limit: limit ?? DEFAULT_HOST_PAGE_LIMIT,
        ...(cursor !== undefined && { cursor }),
        ...(status !== undefined && { status }),
      });
    },
  );

  app.get(
    '/v1/hosts/:name',
    { schema: { params: HostNameParams, response: { 200: HostDetail } } },
    async (request) => {
      const detail = await hostDetail(ctx.readDb, request.params.name, ctx.live());
      if (!detail) throw new CorralError(ErrorCode.NOT_FOUND, `no host named ${request.params.name}`);
      return detail;
    },
  );

  app.post(
    '/v1/hosts/:name/decommission',
    { schema: { params: HostNameParams, response: { 200: DecommissionResponse } } },
    async (request) =>
      decommissionHost(
        decommissionDeps(ctx),
        request.params.name,
        adminActor(request),
        ctx.decommissionWaitMs,
      ),
  );

  app.post(
    '/v1/check',
    { schema: { body: CheckRequest, response: { 200: CheckResponse } } },
    async (request) => ({
      results: await checkFleet(
        { db: ctx.db, pins: ctx.pins, client: ctx.client, live: ctx.live() },
        request.body.timeoutMs,
      ),
    }),
  );
};

import type { Server as HttpServer } from 'node:http';
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { HostNameParams } from '../../protocol/admin-hosts.js';
import { TokenIdParams, TokenListResponse, TokenRevokeResponse } from '../../protocol/admin-tokens.js';
import {
  BundleWrittenRequest,
  BundleWrittenResponse,
  EnrollRequest,
  EnrollResponse,
  TokenCreateRequest,
  TokenCreateResponse,
} from '../../protocol/enrollment.js';
import { CorralError, ErrorCode } from '../../protocol/errors.js';
import { findHostByName } from '../fleet/host-store.js';
import { adminActor } from '../http/admin-auth.js';
import type { AdminContext } from '../http/admin-context.js';

/** Enrollment: bundles made here, and join tokens for workers that make their own keys. */
export const adminEnrollRoutes: FastifyPluginAsyncTypebox<{ ctx: AdminContext }, HttpServer> = async (
  app,
  { ctx },
) => {
  app.post(
    '/v1/enroll',
    { schema: { body: EnrollRequest, response: { 200: EnrollResponse } } },
    async (request) => ctx.enrollment.enroll(request.body, adminActor(request)),
  );

  // `controller enroll` confirms here once it has written the bundle it was given.
  app.post(
    '/v1/hosts/:name/bundle-written',
    {
      schema: {
        params: HostNameParams,
        body: BundleWrittenRequest,
        response: { 200: BundleWrittenResponse },
      },
    },
    async (request) => {
      const host = await findHostByName(ctx.db, request.params.name);
      if (!host || host.id !== request.body.hostId || host.decommissioned_at !== null)
        throw new CorralError(
          ErrorCode.NOT_FOUND,
          `no active host ${request.params.name} with id ${request.body.hostId}`,
        );
      const at = await ctx.enrollment.bundleWritten(host.id, adminActor(request));
      return { hostId: host.id, bundleWrittenAt: at };
    },
  );

  app.post(
    '/v1/tokens',
    { schema: { body: TokenCreateRequest, response: { 200: TokenCreateResponse } } },
    async (request) => {
      const { token, view } = await ctx.tokens.create(request.body, adminActor(request));
      return { token, caPin: `sha256:${ctx.caFingerprint}`, controller: ctx.joinAddress(), view };
    },
  );

  app.get('/v1/tokens', { schema: { response: { 200: TokenListResponse } } }, async () => ({
    tokens: await ctx.tokens.list(),
  }));

  app.post(
    '/v1/tokens/:id/revoke',
    { schema: { params: TokenIdParams, response: { 200: TokenRevokeResponse } } },
    async (request) => ({ token: await ctx.tokens.revoke(request.params.id, adminActor(request)) }),
  );
};

import type { Server as HttpServer } from 'node:http';
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { TokenIdParams, TokenListResponse, TokenRevokeResponse } from '../../protocol/admin-tokens.js';
import {
  EnrollRequest,
  EnrollResponse,
  TokenCreateRequest,
  TokenCreateResponse,
} from '../../protocol/enrollment.js';
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

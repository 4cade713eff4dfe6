import type { Server as HttpServer } from 'node:http';
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { AuditListQuery, AuditListResponse, AuditVerification } from '../../protocol/admin-audit.js';
import type { AdminContext } from '../http/admin-context.js';

/** The audit log: pages of entries, and a walk of the whole hash chain. */
export const adminAuditRoutes: FastifyPluginAsyncTypebox<{ ctx: AdminContext }, HttpServer> = async (
  app,
  { ctx },
) => {
  app.get(
    '/v1/audit',
    { schema: { querystring: AuditListQuery, response: { 200: AuditListResponse } } },
    async (request) => ({ entries: await ctx.audit.list(request.query) }),
  );

  app.get('/v1/audit/verify', { schema: { response: { 200: AuditVerification } } }, async () =>
    ctx.audit.verify(),
  );
};

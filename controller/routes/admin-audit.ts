import type { Server as HttpServer } from 'node:http';
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { AuditListQuery, AuditListResponse, AuditVerification } from '../../protocol/admin-audit.js';
import type { AuditLog } from '../audit/audit-log.js';

export interface AuditRouteOptions {
  readonly audit: AuditLog;
}

/** The audit log: pages of entries, and a walk of the whole hash chain. */
export const adminAuditRoutes: FastifyPluginAsyncTypebox<AuditRouteOptions, HttpServer> = async (
  app,
  { audit },
) => {
  app.get(
    '/v1/audit',
    { schema: { querystring: AuditListQuery, response: { 200: AuditListResponse } } },
    async (request) => ({ entries: await audit.list(request.query) }),
  );

  app.get('/v1/audit/verify', { schema: { response: { 200: AuditVerification } } }, async () =>
    audit.verify(),
  );
};

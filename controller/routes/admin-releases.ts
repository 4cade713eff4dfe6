import type { Server as HttpServer } from 'node:http';
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import {
  ADMIN_RELEASES_PATH,
  AdminReleasesQuery,
  AdminReleasesResponse,
} from '../../protocol/admin-update.js';
import type { ReleaseUpdater } from '../release/update-operation.js';

/** `GET /v1/releases?host=H`: each active host's current release and history, from its updater. */
export const adminReleasesRoutes: FastifyPluginAsyncTypebox<{ updater: ReleaseUpdater }, HttpServer> = async (
  app,
  { updater },
) => {
  app.get(
    ADMIN_RELEASES_PATH,
    { schema: { querystring: AdminReleasesQuery, response: { 200: AdminReleasesResponse } } },
    async (request) => ({ hosts: await updater.releases(request.query.host) }),
  );
};

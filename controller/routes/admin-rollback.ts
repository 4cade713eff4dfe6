import type { Server as HttpServer } from 'node:http';
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import {
  ADMIN_ROLLBACK_PATH,
  AdminRollbackBody,
  AdminRollbackParams,
  AdminRollbackResponse,
} from '../../protocol/admin-update.js';
import { adminActor } from '../http/admin-auth.js';
import type { ReleaseUpdater } from '../release/update-operation.js';

/** `POST /v1/hosts/:name/rollback`: the host's updater puts its previous release back, as an operation. */
export const adminRollbackRoutes: FastifyPluginAsyncTypebox<{ updater: ReleaseUpdater }, HttpServer> = async (
  app,
  { updater },
) => {
  app.post(
    ADMIN_ROLLBACK_PATH,
    {
      schema: {
        params: AdminRollbackParams,
        body: AdminRollbackBody,
        response: { 200: AdminRollbackResponse },
      },
    },
    async (request) => updater.rollback(request.params.name, adminActor(request)),
  );
};

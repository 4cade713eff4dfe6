import type { Server as HttpServer } from 'node:http';
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { ServiceRestartRequest, ServiceRestartResponse } from '../../protocol/admin-restart.js';
import type { Deployer } from '../deploy/deployer.js';
import { adminActor } from '../http/admin-auth.js';

export interface RestartRouteOptions {
  readonly deployer: Pick<Deployer, 'restart'>;
}

/** POST /v1/restart: restart a service's placed instances, one host at a time (service-restart.ts). */
export const adminRestartRoutes: FastifyPluginAsyncTypebox<RestartRouteOptions, HttpServer> = async (
  app,
  o,
) => {
  app.post(
    '/v1/restart',
    { schema: { body: ServiceRestartRequest, response: { 200: ServiceRestartResponse } } },
    async (request) => o.deployer.restart(request.body, adminActor(request)),
  );
};

import type { Server as HttpServer } from 'node:http';
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { AdminDiagnoseRequest, AdminDiagnoseResponse } from '../../protocol/admin-diagnose.js';
import { HostNameParams } from '../../protocol/admin-hosts.js';
import { runDiagnose, type DiagnoseDeps } from '../diagnose/run-diagnose.js';
import { adminActor } from '../http/admin-auth.js';

/** `POST /v1/hosts/:name/diagnose`: one allow-listed diagnostic from the host's agent, audited. */
export const adminDiagnoseRoutes: FastifyPluginAsyncTypebox<DiagnoseDeps, HttpServer> = async (app, deps) => {
  app.post(
    '/v1/hosts/:name/diagnose',
    {
      schema: {
        params: HostNameParams,
        body: AdminDiagnoseRequest,
        response: { 200: AdminDiagnoseResponse },
      },
    },
    async (request) => runDiagnose(deps, request.params.name, request.body, adminActor(request)),
  );
};

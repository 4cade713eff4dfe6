import type { TlsApp } from '../../kit/fastify/create-app.js';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { DiagnosticsRequest, DiagnosticsResponse } from '../../protocol/agent-api.js';
import { runDiagnostic, type DiagnosticsContext } from '../diagnostics.js';

/** POST /v1/diagnostics: one diagnostic from the allow-list; any other kind is 403. */
export function registerDiagnosticsRoute(app: TlsApp, ctx: DiagnosticsContext): void {
  app
    .withTypeProvider<TypeBoxTypeProvider>()
    .post(
      '/v1/diagnostics',
      { schema: { body: DiagnosticsRequest, response: { 200: DiagnosticsResponse } } },
      async (request) => runDiagnostic(request.body, ctx),
    );
}

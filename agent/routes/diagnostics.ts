import type { HttpsJsonApi } from '../../kit/https-json-api.js';
import { DiagnosticsRequest } from '../../protocol/agent-api.js';
import { parseWith } from '../../protocol/validate.js';
import { runDiagnostic, type DiagnosticsContext } from '../diagnostics.js';

/** POST /v1/diagnostics: one diagnostic from the allow-list (DiagnosticsResponse); any other kind is 403. */
export function registerDiagnosticsRoute(api: HttpsJsonApi, ctx: DiagnosticsContext): void {
  api.route({
    method: 'POST',
    path: '/v1/diagnostics',
    parse: (body) => parseWith(DiagnosticsRequest, body, 'body'),
    handle: async ({ body }) => ({ status: 200, body: await runDiagnostic(body, ctx) }),
  });
}

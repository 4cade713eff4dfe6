import type { HttpsJsonApi } from '../../kit/https-json-api.js';
import { ApplyRequest, MAX_APPLY_BODY_BYTES } from '../../protocol/agent-api.js';
import { parseWith } from '../../protocol/validate.js';
import type { AgentCore } from '../agent-core.js';

/**
 * POST /v1/apply: the host's whole desired set. 202 with an operation id (ApplyAccepted); the
 * same generation again is a no-op (`noop: true`); an older one is 409
 * CORRAL_ERR_STALE_GENERATION. A spec is a union on `runtime`, and parseWith names the member's
 * field (or the allowed runtimes) where a union's schema error would only say that no member matched.
 */
export function registerApplyRoute(api: HttpsJsonApi, core: AgentCore): void {
  api.route({
    method: 'POST',
    path: '/v1/apply',
    bodyLimit: MAX_APPLY_BODY_BYTES,
    parse: (body) => parseWith(ApplyRequest, body, 'body'),
    handle: async ({ body }) => ({ status: 202, body: await core.apply(body) }),
  });
}

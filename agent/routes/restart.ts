import type { HttpsJsonApi } from '../../kit/https-json-api.js';
import { RestartRequest } from '../../protocol/agent-api.js';
import { parseWith } from '../../protocol/validate.js';
import type { AgentCore } from '../agent-core.js';

/** POST /v1/restart: stop one service and start it again on its spec; 202 (RestartResponse), 404 when unknown. */
export function registerRestartRoute(api: HttpsJsonApi, core: AgentCore): void {
  api.route({
    method: 'POST',
    path: '/v1/restart',
    parse: (body) => parseWith(RestartRequest, body, 'body'),
    handle: async ({ body }) => ({ status: 202, body: await core.restart(body) }),
  });
}

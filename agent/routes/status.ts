import type { HttpsJsonApi } from '../../kit/https-json-api.js';
import type { AgentCore } from '../agent-core.js';

/** GET /v1/status: desired generation, every service's runtime state, host metrics (protocol AgentStatus). */
export function registerStatusRoute(api: HttpsJsonApi, core: AgentCore): void {
  api.route({
    method: 'GET',
    path: '/v1/status',
    handle: async () => ({ status: 200, body: await core.status() }),
  });
}

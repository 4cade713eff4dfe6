import type { HttpsJsonApi } from '../../kit/https-json-api.js';
import type { AgentCore } from '../agent-core.js';

/** GET /v1/health: version and uptime (protocol AgentHealth). */
export function registerHealthRoute(api: HttpsJsonApi, core: AgentCore): void {
  api.route({
    method: 'GET',
    path: '/v1/health',
    handle: async () => ({ status: 200, body: core.health() }),
  });
}

import type { TlsApp } from '../../kit/fastify/create-app.js';
import { AgentHealth } from '../../protocol/agent-api.js';
import type { AgentCore } from '../agent-core.js';

/** GET /v1/health: version and uptime. */
export function registerHealthRoute(app: TlsApp, core: AgentCore): void {
  app.get('/v1/health', { schema: { response: { 200: AgentHealth } } }, async () => core.health());
}

import type { TlsApp } from '../../kit/fastify/create-app.js';
import { AgentStatus } from '../../protocol/agent-api.js';
import type { AgentCore } from '../agent-core.js';

/** GET /v1/status: desired generation, every service's runtime state, host metrics. */
export function registerStatusRoute(app: TlsApp, core: AgentCore): void {
  app.get('/v1/status', { schema: { response: { 200: AgentStatus } } }, async () => core.status());
}

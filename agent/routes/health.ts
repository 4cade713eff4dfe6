import type { FastifyInstance } from 'fastify';
import { AgentHealth } from '../../protocol/agent-api.js';
import type { AgentCore } from '../agent-core.js';

/** GET /v1/health: version and uptime. */
export function registerHealthRoute(app: FastifyInstance, core: AgentCore): void {
  app.get('/v1/health', { schema: { response: { 200: AgentHealth } } }, async () => core.health());
}

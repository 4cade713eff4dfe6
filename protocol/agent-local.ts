import { Type, type Static } from '@sinclair/typebox';

/**
 * The agent's local health channel, for the updater on the same worker: a Unix socket under
 * the agent's state dir (mode 0600, so only the same user reaches it) that answers
 * `GET /v1/health` with AgentLocalHealth. The mTLS listener stays controller-only.
 */
export const AGENT_HEALTH_SOCKET = 'run/agent.sock';
export const AGENT_LOCAL_HEALTH_PATH = '/v1/health';
/** Environment variable through which the updater tells an agent which release it runs. */
export const RELEASE_VERSION_ENV = 'CORRAL_RELEASE_VERSION';

export const AgentLocalHealth = Type.Object(
  {
    version: Type.String({ minLength: 1, maxLength: 64 }),
    pid: Type.Integer({ minimum: 1 }),
    uptimeSeconds: Type.Number({ minimum: 0 }),
  },
  { additionalProperties: false },
);
export type AgentLocalHealth = Static<typeof AgentLocalHealth>;

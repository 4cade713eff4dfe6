import type { HttpsJsonApi } from '../../kit/https-json-api.js';
import { SelfDestructRequest, type SelfDestructAccepted } from '../../protocol/agent-api.js';
import { parseWith } from '../../protocol/validate.js';

export interface SelfDestructStarter {
  /** Checks the request and freezes the agent; `launch` starts the reaper. */
  prepare(req: SelfDestructRequest): Promise<{ accepted: SelfDestructAccepted; launch: () => Promise<void> }>;
}

/** POST /v1/self-destruct: replies 202 at once (an empty body is `{}`); the reaper starts once the reply is out. */
export function registerSelfDestructRoute(api: HttpsJsonApi, starter: SelfDestructStarter): void {
  api.route({
    method: 'POST',
    path: '/v1/self-destruct',
    parse: (body) => parseWith(SelfDestructRequest, body ?? {}, 'body'),
    handle: async ({ body, log }) => {
      const { accepted, launch } = await starter.prepare(body);
      return {
        status: 202,
        body: accepted,
        afterSend: () => {
          launch().catch((err: unknown) => log.error({ err }, 'reaper did not start'));
        },
      };
    },
  });
}

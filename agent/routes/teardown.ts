import type { HttpsJsonApi } from '../../kit/https-json-api.js';
import { TeardownRequest } from '../../protocol/agent-api.js';
import { parseWith } from '../../protocol/validate.js';
import type { AgentCore } from '../agent-core.js';

/** POST /v1/teardown: stop and forget one service, or all; 202 (TeardownResponse), `teardown-finished` follows. */
export function registerTeardownRoute(api: HttpsJsonApi, core: AgentCore): void {
  api.route({
    method: 'POST',
    path: '/v1/teardown',
    parse: (body) => parseWith(TeardownRequest, body, 'body'),
    handle: async ({ body }) => ({ status: 202, body: await core.teardown(body) }),
  });
}

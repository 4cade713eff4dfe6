import type { TlsApp } from '../../kit/fastify/create-app.js';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { TeardownRequest, TeardownResponse } from '../../protocol/agent-api.js';
import type { AgentCore } from '../agent-core.js';

/** POST /v1/teardown: stop and forget one service, or all; 202, `teardown-finished` follows. */
export function registerTeardownRoute(app: TlsApp, core: AgentCore): void {
  app
    .withTypeProvider<TypeBoxTypeProvider>()
    .post(
      '/v1/teardown',
      { schema: { body: TeardownRequest, response: { 202: TeardownResponse } } },
      async (request, reply) => reply.code(202).send(await core.teardown(request.body)),
    );
}

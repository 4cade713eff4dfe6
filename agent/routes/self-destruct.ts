import type { TlsApp } from '../../kit/fastify/create-app.js';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { SelfDestructAccepted, SelfDestructRequest } from '../../protocol/agent-api.js';

export interface SelfDestructStarter {
  /** Checks the request and freezes the agent; `launch` starts the reaper. */
  prepare(req: SelfDestructRequest): Promise<{ accepted: SelfDestructAccepted; launch: () => Promise<void> }>;
}

/** POST /v1/self-destruct: replies 202 at once; the reaper starts once the reply is out. */
export function registerSelfDestructRoute(app: TlsApp, starter: SelfDestructStarter): void {
  app
    .withTypeProvider<TypeBoxTypeProvider>()
    .post(
      '/v1/self-destruct',
      { schema: { body: SelfDestructRequest, response: { 202: SelfDestructAccepted } } },
      async (request, reply) => {
        const { accepted, launch } = await starter.prepare(request.body ?? {});
        reply.raw.once('finish', () => {
          launch().catch((err: unknown) => request.log.error({ err }, 'reaper did not start'));
        });
        return reply.code(202).send(accepted);
      },
    );
}

import type { TlsApp } from '../../kit/fastify/create-app.js';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { ApplyAccepted, ApplyRequest, MAX_APPLY_BODY_BYTES } from '../../protocol/agent-api.js';
import { parseWith } from '../../protocol/validate.js';
import { CorralError } from '../../protocol/errors.js';
import type { AgentCore } from '../agent-core.js';

/**
 * POST /v1/apply: the host's whole desired set. 202 with an operation id; the same generation
 * again is a no-op (`noop: true`); an older one is 409 CORRAL_ERR_STALE_GENERATION.
 *
 * The body is checked with parseWith rather than the route's JSON-schema validator: a spec is a
 * union on `runtime`, and parseWith names the member's field (or the allowed runtimes) where a
 * union's schema error would only say that no member matched.
 */
export function registerApplyRoute(app: TlsApp, core: AgentCore): void {
  app.withTypeProvider<TypeBoxTypeProvider>().post(
    '/v1/apply',
    {
      bodyLimit: MAX_APPLY_BODY_BYTES,
      schema: { body: ApplyRequest, response: { 202: ApplyAccepted } },
      validatorCompiler: () => (data: unknown) => {
        try {
          return { value: parseWith(ApplyRequest, data, 'body') };
        } catch (e: unknown) {
          if (e instanceof CorralError) return { error: e };
          throw e;
        }
      },
    },
    async (request, reply) => reply.code(202).send(await core.apply(request.body)),
  );
}

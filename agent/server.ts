import type { Logger } from 'pino';
import { serverTlsOptions, type TlsMaterial } from '../pki/index.js';
import { MAX_WORKER_BODY_BYTES } from '../protocol/constants.js';
import { createHttpsJsonApi, type HttpsJsonApi } from '../kit/https-json-api.js';
import { checkPinnedPeer } from '../kit/pinned-peer-check.js';
import type { AgentCore } from './agent-core.js';
import type { DiagnosticsContext } from './diagnostics.js';
import { registerApplyRoute } from './routes/apply.js';
import { registerDiagnosticsRoute } from './routes/diagnostics.js';
import { registerHealthRoute } from './routes/health.js';
import { registerSelfDestructRoute, type SelfDestructStarter } from './routes/self-destruct.js';
import { registerStatusRoute } from './routes/status.js';
import { registerRestartRoute } from './routes/restart.js';
import { registerTeardownRoute } from './routes/teardown.js';

export interface AgentServerOptions {
  readonly material: TlsMaterial;
  readonly pinnedFingerprint: () => string;
  readonly core: AgentCore;
  readonly diagnostics: DiagnosticsContext;
  readonly selfDestruct: SelfDestructStarter;
  readonly log: Logger;
}

export interface AgentServer {
  readonly api: HttpsJsonApi;
  /** New TLS connections use `material` from now on (after a certificate renewal). */
  reloadTls(material: TlsMaterial): void;
}

/**
 * The agent's mTLS API, on node:https rather than fastify: it runs on every worker, where an
 * idle agent's memory is the budget (kit/https-json-api.ts). Only the pinned controller client
 * may call, checked before routing or reading a body. No OpenAPI or docs routes. Bodies are
 * checked strictly against the protocol's schemas (extra properties are refused).
 */
export function createAgentServer(o: AgentServerOptions): AgentServer {
  // Refusals are warnings; per-request lines are off, and info stays out of this log.
  const log = o.log.child({ component: 'agent-api' }, { level: o.log.levelVal > 40 ? o.log.level : 'warn' });
  const api = createHttpsJsonApi({
    https: serverTlsOptions(o.material),
    log,
    bodyLimit: MAX_WORKER_BODY_BYTES,
    guard: (req) =>
      void checkPinnedPeer(req, {
        role: 'controller-client',
        fingerprint: o.pinnedFingerprint,
        guarded: 'agent',
      }),
  });
  registerHealthRoute(api, o.core);
  registerStatusRoute(api, o.core);
  registerApplyRoute(api, o.core);
  registerTeardownRoute(api, o.core);
  registerRestartRoute(api, o.core);
  registerDiagnosticsRoute(api, o.diagnostics);
  registerSelfDestructRoute(api, o.selfDestruct);
  return {
    api,
    reloadTls(material) {
      api.server.setSecureContext(serverTlsOptions(material));
    },
  };
}

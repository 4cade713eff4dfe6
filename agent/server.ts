import type { Logger } from 'pino';
import { serverTlsOptions, type TlsMaterial } from '../pki/index.js';
import { MAX_WORKER_BODY_BYTES } from '../protocol/constants.js';
import { createTlsApp, type TlsApp } from '../kit/fastify/create-app.js';
import { pinnedPeer } from '../kit/fastify/pinned-peer.js';
import type { AgentCore } from './agent-core.js';
import type { DiagnosticsContext } from './diagnostics.js';
import { registerApplyRoute } from './routes/apply.js';
import { registerDiagnosticsRoute } from './routes/diagnostics.js';
import { registerHealthRoute } from './routes/health.js';
import { registerSelfDestructRoute, type SelfDestructStarter } from './routes/self-destruct.js';
import { registerStatusRoute } from './routes/status.js';
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
  readonly app: TlsApp;
  /** New TLS connections use `material` from now on (after a certificate renewal). */
  reloadTls(material: TlsMaterial): void;
}

/**
 * The agent's mTLS API. No OpenAPI or docs routes. Validation is strict (extra properties are
 * refused, never silently dropped: dropping them would also corrupt union matching).
 */
export function createAgentServer(o: AgentServerOptions): AgentServer {
  const app = createTlsApp({
    https: serverTlsOptions(o.material),
    // Refusals are warnings; per-request lines are off, and info stays out of this log.
    log: o.log.child({ component: 'agent-api' }, { level: o.log.levelVal > 40 ? o.log.level : 'warn' }),
    bodyLimit: MAX_WORKER_BODY_BYTES,
  });
  void app.register(pinnedPeer, {
    role: 'controller-client',
    fingerprint: o.pinnedFingerprint,
    guarded: 'agent',
  });
  registerHealthRoute(app, o.core);
  registerStatusRoute(app, o.core);
  registerApplyRoute(app, o.core);
  registerTeardownRoute(app, o.core);
  registerDiagnosticsRoute(app, o.diagnostics);
  registerSelfDestructRoute(app, o.selfDestruct);
  return {
    app,
    reloadTls(material) {
      app.server.setSecureContext(serverTlsOptions(material));
    },
  };
}

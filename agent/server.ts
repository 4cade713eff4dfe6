import type { Server as HttpsServer } from 'node:https';
import Fastify, { type FastifyInstance } from 'fastify';
import type { Logger } from 'pino';
import { serverTlsOptions, type TlsMaterial } from '../pki/index.js';
import { MAX_WORKER_BODY_BYTES } from '../protocol/constants.js';
import { installErrorEnvelope } from '../protocol/fastify-errors.js';
import type { AgentCore } from './agent-core.js';
import type { DiagnosticsContext } from './diagnostics.js';
import { installPeerGuard } from './peer-guard.js';
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
  readonly app: FastifyInstance;
  /** New TLS connections use `material` from now on (after a certificate renewal). */
  reloadTls(material: TlsMaterial): void;
}

/**
 * The agent's mTLS API. No OpenAPI or docs routes. Validation is strict (extra properties are
 * refused, never silently dropped: dropping them would also corrupt union matching).
 */
export function createAgentServer(o: AgentServerOptions): AgentServer {
  const app = Fastify({
    https: serverTlsOptions(o.material),
    // Per-request lines are info: this keeps warnings and errors, not one line per call.
    loggerInstance: o.log.child(
      { component: 'agent-api' },
      { level: o.log.levelVal > 40 ? o.log.level : 'warn' },
    ),
    bodyLimit: MAX_WORKER_BODY_BYTES,
    ajv: { customOptions: { removeAdditional: false, coerceTypes: false } },
    return503OnClosing: true,
  }) as unknown as FastifyInstance; // the https server's type differs only in the raw server

  installErrorEnvelope(app);
  installPeerGuard(app, o.pinnedFingerprint);
  registerHealthRoute(app, o.core);
  registerStatusRoute(app, o.core);
  registerApplyRoute(app, o.core);
  registerTeardownRoute(app, o.core);
  registerDiagnosticsRoute(app, o.diagnostics);
  registerSelfDestructRoute(app, o.selfDestruct);
  return {
    app,
    reloadTls(material) {
      (app.server as HttpsServer).setSecureContext(serverTlsOptions(material));
    },
  };
}

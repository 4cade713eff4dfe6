import type { FastifyInstance } from 'fastify';
import { isPkiError, peerOfRequest, PkiErrorCode, requirePeer } from '../pki/index.js';
import { CorralError, ErrorCode } from '../protocol/errors.js';

/**
 * Lets through only the controller-client identity pinned in the bundle, checked on the TLS
 * connection that carries the request. Any other certificate our CA signed (another worker's
 * agent, an updater, an operator) gets 403 before routing, body parsing or validation.
 */
export function installPeerGuard(app: FastifyInstance, pinnedFingerprint: () => string): void {
  app.addHook('onRequest', async (request) => {
    try {
      requirePeer(peerOfRequest(request.raw), {
        roles: ['controller-client'],
        fingerprints: [pinnedFingerprint()],
      });
    } catch (e: unknown) {
      if (isPkiError(e, PkiErrorCode.PIN_MISMATCH)) {
        throw new CorralError(ErrorCode.PIN_MISMATCH, 'caller is not the pinned controller client');
      }
      if (isPkiError(e))
        throw new CorralError(ErrorCode.FORBIDDEN, `only the controller may call the agent (${e.message})`);
      throw e;
    }
  });
}

import type { FastifyPluginCallback } from 'fastify';
import {
  isPkiError,
  peerOfRequest,
  PkiErrorCode,
  requirePeer,
  type PeerIdentity,
  type Role,
} from '../../pki/index.js';
import { CorralError, ERROR_STATUS, ErrorCode } from '../../protocol/errors.js';

declare module 'fastify' {
  interface FastifyRequest {
    /**
     * The certificate the caller presented on the TLS connection of this request, once the
     * pinned-peer plugin let it through; null on apps without the plugin.
     */
    pinnedPeer: PeerIdentity | null;
  }
}

export interface PinnedPeerOptions {
  /** The one role that may call. */
  readonly role: Role;
  /** The fingerprint pinned for that role now (read per request: it may be re-pinned). */
  readonly fingerprint: () => string;
  /** Who is guarded, for the refusal message: `agent`, `updater`. */
  readonly guarded: string;
}

/**
 * Lets through only the one certificate pinned for `role`, checked on the TLS connection that
 * carries the request, in onRequest: before routing, body parsing or validation. A caller with
 * a certificate of that role but another fingerprint gets 403 CORRAL_ERR_PIN_MISMATCH; no
 * certificate, or another role, 403 CORRAL_ERR_FORBIDDEN. The connection of a refused request
 * is closed. The verified peer is on `request.pinnedPeer`.
 *
 * Registered with `app.register(pinnedPeer, options)`; it decorates the app it is registered
 * on (not a child scope), like fastify-plugin does, so it guards every route of that app.
 */
export const pinnedPeer: FastifyPluginCallback<PinnedPeerOptions> = (app, options, done) => {
  app.decorateRequest('pinnedPeer', null);
  app.addHook('onRequest', async (request, reply) => {
    try {
      request.pinnedPeer = requirePeer(peerOfRequest(request.raw), {
        roles: [options.role],
        fingerprints: [options.fingerprint()],
      });
    } catch (e: unknown) {
      if (!isPkiError(e)) throw e;
      request.log.warn({ code: e.code }, 'caller refused');
      void reply.header('connection', 'close');
      if (e.code === PkiErrorCode.PIN_MISMATCH) {
        // The code is pki's (its one registry); on the wire it is a 403 like FORBIDDEN.
        throw new CorralError(PkiErrorCode.PIN_MISMATCH, `caller is not the pinned ${options.role}`, {
          status: ERROR_STATUS[ErrorCode.FORBIDDEN],
        });
      }
      throw new CorralError(
        ErrorCode.FORBIDDEN,
        `only the pinned ${options.role} may call the ${options.guarded} (${e.code})`,
      );
    }
  });
  done();
};
// What fastify-plugin sets: no encapsulation (the hook and decorator reach the parent app),
// and a name for fastify's plugin tree and errors.
Object.assign(pinnedPeer, {
  [Symbol.for('skip-override')]: true,
  [Symbol.for('fastify.display-name')]: 'corral-pinned-peer',
});

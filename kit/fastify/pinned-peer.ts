import type { FastifyPluginCallback } from 'fastify';
import type { PeerIdentity } from '../../pki/index.js';
import { isCorralError } from '../../protocol/errors.js';
import { checkPinnedPeer, type PinnedPeerOptions } from '../pinned-peer-check.js';

export type { PinnedPeerOptions } from '../pinned-peer-check.js';

declare module 'fastify' {
  interface FastifyRequest {
    /**
     * The certificate the caller presented on the TLS connection of this request, once the
     * pinned-peer plugin let it through; null on apps without the plugin.
     */
    pinnedPeer: PeerIdentity | null;
  }
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
      request.pinnedPeer = checkPinnedPeer(request.raw, options);
    } catch (e: unknown) {
      if (isCorralError(e)) {
        request.log.warn({ code: e.code }, 'caller refused');
        void reply.header('connection', 'close');
      }
      throw e;
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

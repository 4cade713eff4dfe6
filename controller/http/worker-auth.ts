import type { FastifyPluginCallback, FastifyRequest } from 'fastify';
import { peerOfRequest } from '../../pki/index.js';
import { CorralError, ErrorCode } from '../../protocol/errors.js';
import { WIPE_REPORT_PATH } from '../../protocol/wipe.js';
import type { Pin, PinMatch, PinRegistry } from '../pins/pin-registry.js';
import type { HeartbeatRejectReason } from './metrics.js';

/** An authenticated worker: its pinned certificate, checked on the connection of this request. */
export type WorkerPeer = PinMatch;

declare module 'fastify' {
  interface FastifyRequest {
    /** The worker the auth plugin let through; null before it ran or when it refused. */
    workerPeer: WorkerPeer | null;
    /** A decommissioned host's own agent certificate, let through to post its wipe report only. */
    decommissionedPeer: PinMatch | null;
    /** Why the auth plugin refused the request; null when it did not. */
    workerRefusal: HeartbeatRejectReason | null;
  }
}

/**
 * The one refusal every unauthenticated worker call gets, whatever the cause (no certificate,
 * unknown or unpinned certificate, wrong role, another host's id, decommissioned host): the
 * cause goes to metrics and logs, never to the caller.
 */
export function workerRefused(request: FastifyRequest, reason: HeartbeatRejectReason): CorralError {
  request.workerRefusal = reason;
  return new CorralError(ErrorCode.FORBIDDEN, 'client certificate is not accepted here');
}

/** The path of a request without its query string. */
function pathOf(request: FastifyRequest): string {
  const q = request.url.indexOf('?');
  return q < 0 ? request.url : request.url.slice(0, q);
}

/**
 * The worker API's auth plugin (an onRequest hook): the peer must present a certificate whose
 * fingerprint is pinned, active and of the agent role. Runs before the body is read. A pinned
 * certificate that has expired (one TLS let through on a resumed session) is refused like an
 * unknown one, and `onExpired` hears whose it was. Decorates the request with `workerPeer`,
 * `decommissionedPeer` and `workerRefusal`; registered on the app itself (no encapsulation),
 * like fastify-plugin.
 *
 * A certificate that was pinned when its host was decommissioned gets 410
 * CORRAL_ERR_DECOMMISSIONED, so a host that was offline then learns it at its next contact;
 * only the connection presenting that very certificate is told (TLS has proved it holds the
 * key), every other refused caller gets the same 403 as before, so nothing can be learned
 * about other hosts. Its agent certificate may still post `POST /v1/wipe-report`.
 */
export const workerAuth: FastifyPluginCallback<{
  readonly pins: PinRegistry;
  readonly onExpired?: (pin: Pin) => void;
}> = (app, { pins, onExpired }, done) => {
  app.decorateRequest('workerPeer', null);
  app.decorateRequest('decommissionedPeer', null);
  app.decorateRequest('workerRefusal', null);
  app.addHook('onRequest', (request, _reply, next) => {
    const identity = peerOfRequest(request.raw);
    if (!identity) return next(workerRefused(request, 'no-certificate'));
    const pin = pins.lookup(identity.fingerprint);
    if (!pin) {
      const gone = pins.lookupDecommissioned(identity.fingerprint);
      if (gone) {
        if (gone.role === 'agent' && pathOf(request) === WIPE_REPORT_PATH) {
          request.decommissionedPeer = gone;
          return next();
        }
        request.workerRefusal = 'decommissioned';
        return next(new CorralError(ErrorCode.DECOMMISSIONED, 'this host is decommissioned; wipe it'));
      }
      const expired = pins.lookupExpired(identity.fingerprint);
      if (expired) onExpired?.(expired);
      return next(workerRefused(request, expired ? 'expired-certificate' : 'unknown-certificate'));
    }
    if (pin.role !== 'agent') return next(workerRefused(request, 'wrong-role'));
    request.workerPeer = pin;
    next();
  });
  done();
};
Object.assign(workerAuth, {
  [Symbol.for('skip-override')]: true,
  [Symbol.for('fastify.display-name')]: 'corral-worker-auth',
});

/** The authenticated peer of a worker API request (the auth hook has run). */
export function workerPeer(request: FastifyRequest): WorkerPeer {
  const peer = request.workerPeer;
  if (!peer) throw workerRefused(request, 'no-certificate');
  return peer;
}

/**
 * The peer of a wipe report: an active agent pin (a self-destruct that ran before the host was
 * marked decommissioned) or a decommissioned one.
 */
export function wipeReporter(request: FastifyRequest): PinMatch {
  const peer = request.workerPeer ?? request.decommissionedPeer;
  if (!peer || peer.role !== 'agent') throw workerRefused(request, 'wrong-role');
  return peer;
}

/** Why a worker request was refused, when the refusal was an authentication one. */
export function refusalReason(request: FastifyRequest): HeartbeatRejectReason | undefined {
  return request.workerRefusal ?? undefined;
}

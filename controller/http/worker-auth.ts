import type { FastifyReply, FastifyRequest } from 'fastify';
import { peerOfRequest } from '../../pki/index.js';
import { CorralError, ErrorCode } from '../../protocol/errors.js';
import type { Pin, PinMatch, PinRegistry } from '../pins/pin-registry.js';
import { WIPE_REPORT_PATH } from '../../protocol/wipe.js';
import type { HeartbeatRejectReason } from './metrics.js';

/** An authenticated worker: its pinned certificate, checked on the connection of this request. */
export type WorkerPeer = PinMatch;

const peers = new WeakMap<FastifyRequest, WorkerPeer>();
const decommissionedPeers = new WeakMap<FastifyRequest, PinMatch>();
const refusals = new WeakMap<FastifyRequest, HeartbeatRejectReason>();

/**
 * The one refusal every unauthenticated worker call gets, whatever the cause (no certificate,
 * unknown or unpinned certificate, wrong role, another host's id, decommissioned host): the
 * cause goes to metrics and logs, never to the caller.
 */
export function workerRefused(request: FastifyRequest, reason: HeartbeatRejectReason): CorralError {
  refusals.set(request, reason);
  return new CorralError(ErrorCode.FORBIDDEN, 'client certificate is not accepted here');
}

/** The path of a request without its query string. */
function pathOf(request: FastifyRequest): string {
  const q = request.url.indexOf('?');
  return q < 0 ? request.url : request.url.slice(0, q);
}

/**
 * onRequest hook for the worker API: the peer must present a certificate whose fingerprint
 * is pinned, active and of the agent role. Runs before the body is read. A pinned certificate that has expired (one TLS let through on
 * a resumed session) is refused like an unknown one, and `onExpired` hears whose it was.
 *
 * A certificate that was pinned when its host was decommissioned gets 410
 * CORRAL_ERR_DECOMMISSIONED, so a host that was offline then learns it at its next contact;
 * only the connection presenting that very certificate is told (TLS has proved it holds the
 * key), every other refused caller gets the same 403 as before, so nothing can be learned
 * about other hosts. Its agent certificate may still post `POST /v1/wipe-report`.
 */
export function workerAuthHook(pins: PinRegistry, onExpired?: (pin: Pin) => void) {
  return (request: FastifyRequest, _reply: FastifyReply, done: (err?: Error) => void): void => {
    const identity = peerOfRequest(request.raw);
    if (!identity) return done(workerRefused(request, 'no-certificate'));
    const pin = pins.lookup(identity.fingerprint);
    if (!pin) {
      const gone = pins.lookupDecommissioned(identity.fingerprint);
      if (gone) {
        if (gone.role === 'agent' && pathOf(request) === WIPE_REPORT_PATH) {
          decommissionedPeers.set(request, gone);
          return done();
        }
        refusals.set(request, 'decommissioned');
        return done(new CorralError(ErrorCode.DECOMMISSIONED, 'this host is decommissioned; wipe it'));
      }
      const expired = pins.lookupExpired(identity.fingerprint);
      if (expired) onExpired?.(expired);
      return done(workerRefused(request, expired ? 'expired-certificate' : 'unknown-certificate'));
    }
    if (pin.role !== 'agent') return done(workerRefused(request, 'wrong-role'));
    peers.set(request, pin);
    done();
  };
}

/** The authenticated peer of a worker API request (the auth hook has run). */
export function workerPeer(request: FastifyRequest): WorkerPeer {
  const peer = peers.get(request);
  if (!peer) throw workerRefused(request, 'no-certificate');
  return peer;
}

/**
 * The peer of a wipe report: an active agent pin (a self-destruct that ran before the host was
 * marked decommissioned) or a decommissioned one.
 */
export function wipeReporter(request: FastifyRequest): PinMatch {
  const peer = peers.get(request) ?? decommissionedPeers.get(request);
  if (!peer || peer.role !== 'agent') throw workerRefused(request, 'wrong-role');
  return peer;
}

/** Why a worker request was refused, when the refusal was an authentication one. */
export function refusalReason(request: FastifyRequest): HeartbeatRejectReason | undefined {
  return refusals.get(request);
}

import {
  isPkiError,
  peerOfRequest,
  PkiErrorCode,
  requirePeer,
  type PeerIdentity,
  type Role,
} from '../pki/index.js';
import { CorralError, ERROR_STATUS, ErrorCode } from '../protocol/errors.js';

export interface PinnedPeerOptions {
  /** The one role that may call. */
  readonly role: Role;
  /** The fingerprint pinned for that role now (read per request: it may be re-pinned). */
  readonly fingerprint: () => string;
  /** Who is guarded, for the refusal message: `agent`, `updater`. */
  readonly guarded: string;
}

/**
 * The certificate on the TLS connection that carries `raw`, when it is the one pinned for the
 * role. A certificate of that role but another fingerprint is 403 CORRAL_ERR_PIN_MISMATCH; no
 * certificate, or another role, 403 CORRAL_ERR_FORBIDDEN. Shared by the fastify plugin
 * (kit/fastify/pinned-peer.ts) and the agent's API (kit/https-json-api.ts's guard).
 */
export function checkPinnedPeer(raw: { socket: unknown }, options: PinnedPeerOptions): PeerIdentity {
  try {
    return requirePeer(peerOfRequest(raw), { roles: [options.role], fingerprints: [options.fingerprint()] });
  } catch (e: unknown) {
    if (!isPkiError(e)) throw e;
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
}

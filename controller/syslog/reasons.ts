/** Why the listener refused a connection before reading any of its data. */
export const RefuseReason = {
  /** The TLS handshake failed: no certificate, another CA, expired, wrong protocol. */
  HANDSHAKE: 'handshake-failed',
  NO_CERTIFICATE: 'no-certificate',
  /** The certificate is not pinned to an active host (never enrolled, or decommissioned). */
  UNPINNED: 'unpinned',
  /** The certificate's role is not one that may send logs (the worker's agent identity). */
  WRONG_ROLE: 'wrong-role',
  /** The certificate names a host other than the one its pin belongs to. */
  HOST_MISMATCH: 'host-mismatch',
  TOO_MANY_CONNECTIONS: 'too-many-connections',
  INGEST_UNAVAILABLE: 'ingest-unavailable',
  LISTENER_CLOSING: 'listener-closing',
  /** The host's own last-pinned certificate of a decommissioned host: told so, then closed. */
  DECOMMISSIONED: 'decommissioned',
} as const;
export type RefuseReason = (typeof RefuseReason)[keyof typeof RefuseReason];

/** Why the listener closed an accepted connection. */
export const CloseReason = {
  PEER_CLOSED: 'peer-closed',
  IDLE: 'idle',
  MALFORMED_LENGTH: 'malformed-length',
  FRAME_TOO_LARGE: 'frame-too-large',
  /** The peer went away in the middle of a frame (or of a Corral batch). */
  TRUNCATED_FRAME: 'truncated-frame',
  PROTOCOL: 'protocol-error',
  SOCKET_ERROR: 'socket-error',
  /** The host's pin was removed while it was connected. */
  HOST_REVOKED: 'host-revoked',
  /** Another connection of the same host opened the same stream. */
  STREAM_TAKEN: 'stream-taken',
  INGEST_FAILED: 'ingest-failed',
  LISTENER_CLOSING: 'listener-closing',
  /** A defect of ours met this connection's input; it is closed rather than the process. */
  INTERNAL: 'internal-error',
} as const;
export type CloseReason = (typeof CloseReason)[keyof typeof CloseReason];

/** Close reasons that mean the peer misbehaved or the listener failed, logged as warnings. */
export const WARN_CLOSE_REASONS: ReadonlySet<CloseReason> = new Set<CloseReason>([
  CloseReason.MALFORMED_LENGTH,
  CloseReason.FRAME_TOO_LARGE,
  CloseReason.TRUNCATED_FRAME,
  CloseReason.PROTOCOL,
  CloseReason.SOCKET_ERROR,
  CloseReason.INGEST_FAILED,
  CloseReason.INTERNAL,
]);

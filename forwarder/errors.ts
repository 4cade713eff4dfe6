import { CorralError, ErrorCode } from '../protocol/errors.js';

/**
 * Error codes raised by forwarder/ (codes of protocol/errors.ts are referred to, not spelled
 * again). Callers match on `code`, never on message text.
 */
export const ForwarderErrorCode = {
  /**
   * The positions database is gone (missing, empty, damaged or another one) although this
   * forwarder has shipped before, and the listener could not say where its files stand.
   */
  POSITIONS_LOST: 'CORRAL_ERR_POSITIONS_LOST',
  /** The positions database or its marker cannot be read or written. */
  POSITIONS_DAMAGED: 'CORRAL_ERR_POSITIONS_DAMAGED',
  /** The connection to the listener ended (closed by the peer, failed, or timed out connecting). */
  SESSION_CLOSED: 'CORRAL_ERR_SESSION_CLOSED',
  /** The listener did not answer a request in time. */
  RESPONSE_TIMEOUT: 'CORRAL_ERR_RESPONSE_TIMEOUT',
  SYSLOG_PROTOCOL: ErrorCode.SYSLOG_PROTOCOL,
  CLOSED: ErrorCode.CLOSED,
} as const;

export type ForwarderErrorCode = (typeof ForwarderErrorCode)[keyof typeof ForwarderErrorCode];

export class ForwarderError extends CorralError<ForwarderErrorCode> {
  override readonly name: string = 'ForwarderError';

  constructor(code: ForwarderErrorCode, message: string, options?: { cause?: unknown }) {
    super(code, message, options);
  }
}

export function isForwarderError(e: unknown, code?: ForwarderErrorCode): e is ForwarderError {
  return e instanceof ForwarderError && (code === undefined || e.code === code);
}

/** Codes that end the forwarder as failed (exit 1); every other error ends one session only. */
const FATAL_CODES: ReadonlySet<ForwarderErrorCode> = new Set([
  ForwarderErrorCode.POSITIONS_LOST,
  ForwarderErrorCode.POSITIONS_DAMAGED,
]);

/** The positions cannot be trusted: the forwarder must stop rather than guess where it is. */
export function isFatalForwarderError(e: unknown): e is ForwarderError {
  return isForwarderError(e) && FATAL_CODES.has(e.code);
}

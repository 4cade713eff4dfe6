/** Error codes raised by forwarder/. Callers match on `code`, never on message text. */
export const ForwarderErrorCode = {
  /**
   * The positions database is gone (missing, empty, damaged or another one) although this
   * forwarder has shipped before, and the listener could not say where its files stand.
   */
  POSITIONS_LOST: 'CORRAL_ERR_POSITIONS_LOST',
  /** The positions database or its marker cannot be read or written. */
  POSITIONS_DAMAGED: 'CORRAL_ERR_POSITIONS_DAMAGED',
} as const;

export type ForwarderErrorCode = (typeof ForwarderErrorCode)[keyof typeof ForwarderErrorCode];

export class ForwarderError extends Error {
  override readonly name = 'ForwarderError';
  readonly code: ForwarderErrorCode;

  constructor(code: ForwarderErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
  }
}

export function isForwarderError(e: unknown, code?: ForwarderErrorCode): e is ForwarderError {
  return e instanceof ForwarderError && (code === undefined || e.code === code);
}

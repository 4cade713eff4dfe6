/**
 * Error codes raised inside the controller process (not on the wire; wire errors use
 * protocol/errors.ts). Callers match on `code`.
 */
export const ControllerErrorCode = {
  MIGRATION_FAILED: 'CORRAL_ERR_MIGRATION_FAILED',
  DATABASE_OPEN: 'CORRAL_ERR_DATABASE_OPEN',
  STATE_MISSING: 'CORRAL_ERR_STATE_MISSING',
  STATE_INVALID: 'CORRAL_ERR_STATE_INVALID',
  /** A state file that existed is missing, empty or fails its check; the message names it and the way back. */
  STATE_DAMAGED: 'CORRAL_ERR_STATE_DAMAGED',
} as const;

export type ControllerErrorCode = (typeof ControllerErrorCode)[keyof typeof ControllerErrorCode];

export class ControllerError extends Error {
  override readonly name = 'ControllerError';
  readonly code: ControllerErrorCode;
  /** The state file the error is about, when there is one. */
  readonly file: string | undefined;

  constructor(code: ControllerErrorCode, message: string, options?: { cause?: unknown; file?: string }) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
    this.file = options?.file;
  }
}

export function isControllerError(e: unknown, code?: ControllerErrorCode): e is ControllerError {
  return e instanceof ControllerError && (code === undefined || e.code === code);
}

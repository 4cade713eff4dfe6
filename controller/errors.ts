import { CorralError, ErrorCode } from '../protocol/errors.js';

/**
 * Error codes raised inside the controller process (not on the wire; wire errors use
 * protocol/errors.ts, whose codes this registry refers to rather than spells again).
 * Callers match on `code`.
 */
export const ControllerErrorCode = {
  MIGRATION_FAILED: 'CORRAL_ERR_MIGRATION_FAILED',
  DATABASE_OPEN: 'CORRAL_ERR_DATABASE_OPEN',
  /** `--database` (or the config's `database`) is neither `sqlite:PATH` nor a PostgreSQL URL. */
  DATABASE_TARGET: 'CORRAL_ERR_DATABASE_TARGET',
  STATE_MISSING: 'CORRAL_ERR_STATE_MISSING',
  STATE_INVALID: 'CORRAL_ERR_STATE_INVALID',
  /** A state file that existed is missing, empty or fails its check; the message names it and the way back. */
  STATE_DAMAGED: ErrorCode.STATE_DAMAGED,
  /** A database row does not match its column's schema; the message names the table, row and column. */
  ROW_DAMAGED: 'CORRAL_ERR_ROW_DAMAGED',
  /** What this build cannot do: streaming through the sqlite3 driver, a dialect other than SQLite or PostgreSQL. */
  UNSUPPORTED: 'CORRAL_ERR_UNSUPPORTED',
  CLOSED: ErrorCode.CLOSED,
  /** The automatic backup before a destructive action failed; the action was refused and nothing changed. */
  BACKUP_FIRST_FAILED: ErrorCode.BACKUP_FIRST_FAILED,
  WRITE_FAILED: ErrorCode.WRITE_FAILED,
} as const;

export type ControllerErrorCode = (typeof ControllerErrorCode)[keyof typeof ControllerErrorCode];

export class ControllerError extends CorralError<ControllerErrorCode> {
  override readonly name: string = 'ControllerError';
  /** The state file the error is about, when there is one. */
  readonly file: string | undefined;

  constructor(code: ControllerErrorCode, message: string, options?: { cause?: unknown; file?: string }) {
    super(code, message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.file = options?.file;
  }
}

export function isControllerError(e: unknown, code?: ControllerErrorCode): e is ControllerError {
  return e instanceof ControllerError && (code === undefined || e.code === code);
}

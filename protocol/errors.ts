import { Type, type Static } from '@sinclair/typebox';
import { Value } from '@sinclair/typebox/value';

/**
 * The registry of error codes that cross the wire, and of the codes every package shares. Each
 * code is registered once across all of Corral's registries (this one, pki/errors.ts and one per
 * deployable); a package's registry may refer to a code of this one, never spell it again.
 * Callers match on `code`; messages are for people and may change.
 */
export const ErrorCode = {
  BAD_REQUEST: 'CORRAL_ERR_BAD_REQUEST',
  VALIDATION: 'CORRAL_ERR_VALIDATION',
  PAYLOAD_TOO_LARGE: 'CORRAL_ERR_PAYLOAD_TOO_LARGE',
  UNAUTHENTICATED: 'CORRAL_ERR_UNAUTHENTICATED',
  FORBIDDEN: 'CORRAL_ERR_FORBIDDEN',
  NOT_FOUND: 'CORRAL_ERR_NOT_FOUND',
  CONFLICT: 'CORRAL_ERR_CONFLICT',
  NAME_TAKEN: 'CORRAL_ERR_NAME_TAKEN',
  NAME_RESERVED: 'CORRAL_ERR_NAME_RESERVED',
  STALE_GENERATION: 'CORRAL_ERR_STALE_GENERATION',
  PLACEMENT: 'CORRAL_ERR_PLACEMENT',
  UNAVAILABLE: 'CORRAL_ERR_UNAVAILABLE',
  TIMEOUT: 'CORRAL_ERR_TIMEOUT',
  INTERNAL: 'CORRAL_ERR_INTERNAL',
  NOT_ENROLLED: 'CORRAL_ERR_NOT_ENROLLED',
  CSR_REFUSED: 'CORRAL_ERR_CSR_REFUSED',
  RELEASE_REFUSED: 'CORRAL_ERR_RELEASE_REFUSED',
  DIGEST_MISMATCH: 'CORRAL_ERR_DIGEST_MISMATCH',
  UNSAFE_ARCHIVE: 'CORRAL_ERR_UNSAFE_ARCHIVE',
  ROLLED_BACK: 'CORRAL_ERR_ROLLED_BACK',
  /** A join claimed an address outside the controller's allowed CIDRs; the token is still good. */
  JOIN_ADDRESS_REFUSED: 'CORRAL_ERR_JOIN_ADDRESS_REFUSED',
  /** `enroll --replace` of a host that was seen or whose bundle was written. */
  REPLACE_REFUSED: 'CORRAL_ERR_REPLACE_REFUSED',
  RATE_LIMITED: 'CORRAL_ERR_RATE_LIMITED',
  UPDATER_BUSY: 'CORRAL_ERR_UPDATER_BUSY',
  /** A daemon's state file that existed is missing, empty or damaged; it refuses to start. */
  STATE_DAMAGED: 'CORRAL_ERR_STATE_DAMAGED',
  /** A client, writer or store was used after its `close()` began. */
  CLOSED: 'CORRAL_ERR_CLOSED',
  /** A command Corral runs (systemd-run, a restart command, a corral subcommand) failed. */
  COMMAND_FAILED: 'CORRAL_ERR_COMMAND_FAILED',
  /** A process could not be started, or would not stop. */
  PROCESS_FAILED: 'CORRAL_ERR_PROCESS_FAILED',
  /** A file write did not complete (short write, a record too large for its file). */
  WRITE_FAILED: 'CORRAL_ERR_WRITE_FAILED',
  /** A syslog byte stream's frame has a malformed length prefix (RFC 6587 octet counting). */
  SYSLOG_FRAME: 'CORRAL_ERR_SYSLOG_FRAME',
  /** A peer on a syslog connection broke the `@corral/1` control protocol. */
  SYSLOG_PROTOCOL: 'CORRAL_ERR_SYSLOG_PROTOCOL',
  /** Told only to a decommissioned host, on a connection presenting its own last-pinned certificate. */
  DECOMMISSIONED: 'CORRAL_ERR_DECOMMISSIONED',
  /** A diagnostic kind outside the agent's allow-list; refused before any call to the agent. */
  DIAGNOSTIC_NOT_ALLOWED: 'CORRAL_ERR_DIAGNOSTIC_NOT_ALLOWED',
  /** A webhook URL that is malformed, too long, carries credentials, or is plain http off loopback. */
  WEBHOOK_TARGET_REFUSED: 'CORRAL_ERR_WEBHOOK_TARGET_REFUSED',
  /** A log query beyond its bounds: a limit over the maximum, a pattern too long or unsafe to run. */
  LOG_QUERY_REFUSED: 'CORRAL_ERR_LOG_QUERY_REFUSED',
  /** An authenticated operator lacks the scope a route needs; the message names it. */
  SCOPE: 'CORRAL_ERR_SCOPE',
  /** The container engine was unreachable, or refused or failed a call (pull, create, start). */
  CONTAINER_ENGINE: 'CORRAL_ERR_CONTAINER_ENGINE',
  /** A backup's passphrase does not open it (its header's key check fails); nothing was written. */
  BACKUP_PASSPHRASE: 'CORRAL_ERR_BACKUP_PASSPHRASE',
  /** A backup file fails its authentication or its format (flipped, cut short, extended, foreign). */
  BACKUP_DAMAGED: 'CORRAL_ERR_BACKUP_DAMAGED',
  /** `controller restore` into a state dir that is not empty, without `--force`; nothing was changed. */
  RESTORE_REFUSED: 'CORRAL_ERR_RESTORE_REFUSED',
  /** A destructive action (decommission, teardown of everything) refused: the backup taken first failed. */
  BACKUP_FIRST_FAILED: 'CORRAL_ERR_BACKUP_FIRST_FAILED',
  /** A browser's mutating request without its session's anti-CSRF header (or without a session). */
  CSRF: 'CORRAL_ERR_CSRF',
} as const;

export type ErrorCode = (typeof ErrorCode)[keyof typeof ErrorCode];

/** HTTP status each code travels with. */
export const ERROR_STATUS: Record<ErrorCode, number> = {
  CORRAL_ERR_BAD_REQUEST: 400,
  CORRAL_ERR_VALIDATION: 400,
  CORRAL_ERR_PAYLOAD_TOO_LARGE: 413,
  CORRAL_ERR_UNAUTHENTICATED: 401,
  CORRAL_ERR_FORBIDDEN: 403,
  CORRAL_ERR_NOT_FOUND: 404,
  CORRAL_ERR_CONFLICT: 409,
  CORRAL_ERR_NAME_TAKEN: 409,
  CORRAL_ERR_NAME_RESERVED: 400,
  CORRAL_ERR_STALE_GENERATION: 409,
  CORRAL_ERR_PLACEMENT: 422,
  CORRAL_ERR_UNAVAILABLE: 503,
  CORRAL_ERR_TIMEOUT: 504,
  CORRAL_ERR_INTERNAL: 500,
  CORRAL_ERR_NOT_ENROLLED: 409,
  CORRAL_ERR_CSR_REFUSED: 400,
  CORRAL_ERR_RELEASE_REFUSED: 409,
  CORRAL_ERR_DIGEST_MISMATCH: 400,
  CORRAL_ERR_UNSAFE_ARCHIVE: 400,
  CORRAL_ERR_ROLLED_BACK: 502,
  CORRAL_ERR_JOIN_ADDRESS_REFUSED: 403,
  CORRAL_ERR_REPLACE_REFUSED: 409,
  CORRAL_ERR_RATE_LIMITED: 429,
  CORRAL_ERR_UPDATER_BUSY: 409,
  CORRAL_ERR_STATE_DAMAGED: 500,
  CORRAL_ERR_CLOSED: 503,
  CORRAL_ERR_COMMAND_FAILED: 500,
  CORRAL_ERR_PROCESS_FAILED: 500,
  CORRAL_ERR_WRITE_FAILED: 500,
  CORRAL_ERR_SYSLOG_FRAME: 400,
  CORRAL_ERR_SYSLOG_PROTOCOL: 400,
  CORRAL_ERR_DECOMMISSIONED: 410,
  CORRAL_ERR_DIAGNOSTIC_NOT_ALLOWED: 400,
  CORRAL_ERR_WEBHOOK_TARGET_REFUSED: 400,
  CORRAL_ERR_LOG_QUERY_REFUSED: 400,
  CORRAL_ERR_SCOPE: 403,
  CORRAL_ERR_CONTAINER_ENGINE: 502,
  CORRAL_ERR_BACKUP_PASSPHRASE: 400,
  CORRAL_ERR_BACKUP_DAMAGED: 400,
  CORRAL_ERR_RESTORE_REFUSED: 409,
  CORRAL_ERR_BACKUP_FIRST_FAILED: 503,
  CORRAL_ERR_CSRF: 403,
};

/** The one error envelope every Corral API answers with: no stacks, no paths. */
export const ErrorEnvelope = Type.Object(
  {
    error: Type.Object(
      {
        code: Type.String({ maxLength: 64 }),
        message: Type.String({ maxLength: 2048 }),
      },
      { additionalProperties: false },
    ),
  },
  { additionalProperties: false },
);
export type ErrorEnvelope = Static<typeof ErrorEnvelope>;

/**
 * The base of every error Corral raises on purpose: a registered code (callers match on it) and
 * a message for people. Raised with a code of this registry it is meant for a client and
 * travels with `statusCode`; the packages' own families (ControllerError, ForwarderError,
 * JoinError, ...) extend it with their registry's codes and have no status unless given one,
 * so an HTTP handler answers them as CORRAL_ERR_INTERNAL. pki/ may import nothing of ours, so
 * its PkiError is the one coded error outside this class; match it with `hasErrorCode`.
 */
export class CorralError<C extends string = ErrorCode> extends Error {
  override readonly name: string = 'CorralError';
  readonly code: C;
  /** The HTTP status the error is sent with, or undefined for one that is not for a client. */
  readonly statusCode: number | undefined;

  constructor(code: C, message: string, options?: { cause?: unknown; status?: number }) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
    // Only a plain CorralError takes its code's status: a package's family is for its own
    // callers, and its messages (file paths) must not reach a client unless it says so.
    this.statusCode =
      options?.status ?? (new.target === CorralError && isWireCode(code) ? ERROR_STATUS[code] : undefined);
  }

  toEnvelope(): ErrorEnvelope {
    return { error: { code: this.code, message: this.message } };
  }
}

/**
 * The other side answered with an error envelope (or with an error status and no envelope,
 * `code` then CORRAL_ERR_UNAVAILABLE): its code as sent, which a newer peer may not have
 * registered here, and the HTTP status. Every client of a Corral API throws this one.
 */
export class RemoteError extends CorralError<string> {
  override readonly name: string = 'RemoteError';
  readonly status: number;
  /** How long the other side asked to wait (its `Retry-After`), in ms, when it said. */
  readonly retryAfterMs: number | undefined;

  constructor(
    code: string,
    message: string,
    status: number,
    options?: { retryAfterMs?: number | undefined },
  ) {
    super(code, message, { status });
    this.status = status;
    this.retryAfterMs = options?.retryAfterMs;
  }
}

/** The error envelope `text` holds, or undefined when it is not one (not JSON, or another shape). */
export function envelopeOf(text: string): ErrorEnvelope | undefined {
  let parsed: unknown;
  try {
    parsed = text.length > 0 ? JSON.parse(text) : undefined;
  } catch (e: unknown) {
    void e; // SyntaxError: not an envelope
  }
  return Value.Check(ErrorEnvelope, parsed) ? parsed : undefined;
}

/**
 * The RemoteError for an error answer: the envelope's code and message when `text` is one,
 * else CORRAL_ERR_UNAVAILABLE naming the status. `what` names the call (`/v1/renew`).
 */
export function remoteErrorOf(
  status: number,
  text: string,
  what: string,
  options?: { retryAfterMs?: number | undefined },
): RemoteError {
  const envelope = envelopeOf(text);
  return envelope
    ? new RemoteError(envelope.error.code, `${what}: ${envelope.error.message}`, status, options)
    : new RemoteError(ErrorCode.UNAVAILABLE, `${what}: status ${status}`, status, options);
}

const WIRE_CODES: ReadonlySet<string> = new Set(Object.values(ErrorCode));

export function isWireCode(code: string): code is ErrorCode {
  return WIRE_CODES.has(code);
}

export function isCorralError<C extends string = string>(e: unknown, code?: C): e is CorralError<C> {
  return e instanceof CorralError && (code === undefined || e.code === code);
}

/** True for any coded error of ours (a CorralError or pki's PkiError) with `code`, when given. */
export function hasErrorCode(e: unknown, code?: string): e is Error & { readonly code: string } {
  if (!(e instanceof Error)) return false;
  const c = (e as { code?: unknown }).code;
  return typeof c === 'string' && c.startsWith('CORRAL_ERR_') && (code === undefined || c === code);
}

export function errorEnvelope(code: string, message: string): ErrorEnvelope {
  return { error: { code, message } };
}

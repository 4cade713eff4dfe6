import { Type, type Static } from '@sinclair/typebox';

/**
 * The one registry of error codes that cross the wire. Callers match on `code`; messages are
 * for people and may change.
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
  PIN_MISMATCH: 'CORRAL_ERR_PIN_MISMATCH',
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
  /** Told only to a decommissioned host, on a connection presenting its own last-pinned certificate. */
  DECOMMISSIONED: 'CORRAL_ERR_DECOMMISSIONED',
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
  CORRAL_ERR_PIN_MISMATCH: 403,
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
  CORRAL_ERR_DECOMMISSIONED: 410,
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

/** An error meant to reach a client: carries its code and (derived) HTTP status. */
export class CorralError extends Error {
  override readonly name = 'CorralError';
  readonly code: ErrorCode;
  readonly statusCode: number;

  constructor(code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
    this.statusCode = ERROR_STATUS[code];
  }

  toEnvelope(): ErrorEnvelope {
    return { error: { code: this.code, message: this.message } };
  }
}

export function isCorralError(e: unknown, code?: ErrorCode): e is CorralError {
  return e instanceof CorralError && (code === undefined || e.code === code);
}

export function errorEnvelope(code: ErrorCode, message: string): ErrorEnvelope {
  return { error: { code, message } };
}

/**
 * Error codes raised by pki/. Callers match on `code`, never on message text.
 */
export const PkiErrorCode = {
  CA_INCOMPLETE: 'CORRAL_ERR_CA_INCOMPLETE',
  CA_INVALID: 'CORRAL_ERR_CA_INVALID',
  CSR_INVALID: 'CORRAL_ERR_CSR_INVALID',
  CSR_BAD_SIGNATURE: 'CORRAL_ERR_CSR_BAD_SIGNATURE',
  CSR_REQUESTS_CA: 'CORRAL_ERR_CSR_REQUESTS_CA',
  CSR_WEAK_KEY: 'CORRAL_ERR_CSR_WEAK_KEY',
  KEY_PERMISSIONS: 'CORRAL_ERR_KEY_PERMISSIONS',
  BUNDLE_INVALID: 'CORRAL_ERR_BUNDLE_INVALID',
  BUNDLE_MISSING: 'CORRAL_ERR_BUNDLE_MISSING',
  PEER_NO_CERT: 'CORRAL_ERR_PEER_NO_CERT',
  PEER_ROLE: 'CORRAL_ERR_PEER_ROLE',
  PIN_MISMATCH: 'CORRAL_ERR_PIN_MISMATCH',
  BAD_PARAMETER: 'CORRAL_ERR_PKI_BAD_PARAMETER',
  /** DER that is not well-formed or not the structure expected (callers usually wrap it). */
  DER_INVALID: 'CORRAL_ERR_PKI_DER_INVALID',
} as const;

export type PkiErrorCode = (typeof PkiErrorCode)[keyof typeof PkiErrorCode];

export class PkiError extends Error {
  override readonly name = 'PkiError';
  readonly code: PkiErrorCode;

  constructor(code: PkiErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
  }
}

export function isPkiError(e: unknown, code?: PkiErrorCode): e is PkiError {
  return e instanceof PkiError && (code === undefined || e.code === code);
}

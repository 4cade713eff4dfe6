import { ErrorCode } from '../../protocol/errors.js';

/** A failed call to a worker, as the admin API reports it: a stable code and a short message. */
export interface CallFailure {
  readonly code: string;
  readonly message: string;
}

const TIMEOUT_CODES = new Set(['UND_ERR_HEADERS_TIMEOUT', 'UND_ERR_BODY_TIMEOUT', 'UND_ERR_CONNECT_TIMEOUT']);

/** Classifies an error thrown by the worker client. Pin and role failures keep their code. */
export function describeCallError(e: unknown): CallFailure {
  const err = e as { code?: unknown; name?: unknown; message?: unknown; cause?: unknown };
  const code = typeof err.code === 'string' ? err.code : undefined;
  const message = typeof err.message === 'string' ? err.message.slice(0, 500) : String(e);
  if (code?.startsWith('CORRAL_ERR_')) return { code, message };
  if (err.name === 'TimeoutError' || err.name === 'AbortError' || (code && TIMEOUT_CODES.has(code))) {
    return { code: ErrorCode.TIMEOUT, message: 'no answer in time' };
  }
  if (err.cause !== undefined && err.cause !== e) {
    const inner = describeCallError(err.cause);
    if (inner.code !== ErrorCode.UNAVAILABLE) return inner;
  }
  return { code: ErrorCode.UNAVAILABLE, message: code ? `${code}: ${message}` : message };
}

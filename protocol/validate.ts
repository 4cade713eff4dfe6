import type { Static, TSchema } from '@sinclair/typebox';
import { FormatRegistry } from '@sinclair/typebox';
import { Value } from '@sinclair/typebox/value';
import { CorralError, ErrorCode } from './errors.js';

const DATE_TIME_RE = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:Z|[+-]\d{2}:\d{2})$/;
if (!FormatRegistry.Has('date-time')) {
  FormatRegistry.Set('date-time', (v) => DATE_TIME_RE.test(v) && !Number.isNaN(Date.parse(v)));
}

/**
 * Checks `value` against `schema`; returns it typed, or throws CORRAL_ERR_VALIDATION naming
 * the first offending field. For data read from disk or the network outside fastify.
 */
export function parseWith<T extends TSchema>(schema: T, value: unknown, what: string): Static<T> {
  if (Value.Check(schema, value)) return value;
  const first = [...Value.Errors(schema, value)][0];
  const where = first ? (first.path === '' ? '/' : first.path) : '/';
  throw new CorralError(ErrorCode.VALIDATION, `${what}: ${where}: ${first?.message ?? 'invalid'}`);
}

/** Parses JSON text of bounded size and validates it. */
export function parseJsonWith<T extends TSchema>(
  schema: T,
  text: string,
  what: string,
  maxBytes: number,
): Static<T> {
  if (Buffer.byteLength(text) > maxBytes) {
    throw new CorralError(ErrorCode.PAYLOAD_TOO_LARGE, `${what} is larger than ${maxBytes} bytes`);
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (e: unknown) {
    throw new CorralError(ErrorCode.VALIDATION, `${what} is not valid JSON`, { cause: e });
  }
  return parseWith(schema, value, what);
}

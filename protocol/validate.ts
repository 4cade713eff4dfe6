import type { Static, TSchema } from '@sinclair/typebox';
import { FormatRegistry } from '@sinclair/typebox';
import { Value, ValueErrorType } from '@sinclair/typebox/value';
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
  if (first && first.type === ValueErrorType.Union) {
    const inner = unionProblem(first.schema, first.value, first.path);
    if (inner) throw new CorralError(ErrorCode.VALIDATION, `${what}: ${inner}`);
  }
  const where = first ? (first.path === '' ? '/' : first.path) : '/';
  throw new CorralError(ErrorCode.VALIDATION, `${what}: ${where}: ${first?.message ?? 'invalid'}`);
}

/** Fields whose literal value picks the member of a union (`runtime`, a health check's `type`). */
const DISCRIMINATORS = ['runtime', 'type'] as const;

/**
 * For a union of objects told apart by a literal field: the first error of the member the
 * value's field names, or, when it names none, that field's allowed values. Undefined for any
 * other union (the caller then reports the union as a whole).
 */
function unionProblem(schema: TSchema, value: unknown, path: string): string | undefined {
  const members = (schema as { anyOf?: TSchema[] }).anyOf;
  if (!members || typeof value !== 'object' || value === null) return undefined;
  // One object member beside literals (`placement: every-host | {…}`): an object value means it.
  const objects = members.filter((m) => (m as { type?: unknown }).type === 'object');
  if (objects.length === 1 && objects[0]) return memberProblem(objects[0], value, path);
  for (const key of DISCRIMINATORS) {
    const literals = members.map(
      (m) => (m as { properties?: Record<string, { const?: unknown }> }).properties?.[key]?.const,
    );
    if (literals.some((l) => typeof l !== 'string')) continue;
    const got = (value as Record<string, unknown>)[key];
    // A member whose field is optional is the one a value without the field means.
    const index =
      got === undefined
        ? members.findIndex((m) => !((m as { required?: string[] }).required ?? []).includes(key))
        : literals.indexOf(got);
    const member = members[index];
    if (index < 0 || !member) {
      const seen = got === undefined ? 'missing' : `got ${JSON.stringify(got).slice(0, 40)}`;
      return `${path}/${key}: must be one of ${literals.join(', ')} (${seen})`;
    }
    return memberProblem(member, value, path);
  }
  return undefined;
}

/** The first error of `value` against the union member it stands for, as `PATH: message`. */
function memberProblem(member: TSchema, value: unknown, path: string): string | undefined {
  const first = [...Value.Errors(member, value)][0];
  if (!first) return undefined;
  const at = `${path}${first.path}`;
  if (first.type === ValueErrorType.Union) {
    const inner = unionProblem(first.schema, first.value, at);
    if (inner) return inner;
  }
  return `${at === '' ? '/' : at}: ${first.message}`;
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

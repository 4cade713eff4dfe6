import { createHash } from 'node:crypto';

/**
 * The canonical JSON of RFC 8785 (JCS): no whitespace, object members sorted by their names as
 * UTF-16 code units at every depth, numbers in the ECMAScript shortest round-trip form and
 * strings escaped as JSON.stringify does (both are what JCS prescribes). Equal values give
 * equal bytes, which is what spec hashes and the audit chain are computed over.
 *
 * Only plain JSON values are accepted: a non-finite number, a bigint, a function, a symbol or
 * an `undefined` outside an object member throws TypeError. An object member whose value is
 * `undefined` is left out, as JSON.stringify does (optional fields that are unset). JCS takes
 * I-JSON input, so it does not say what a lone surrogate becomes; here it is escaped as
 * `\udXXX` like JSON.stringify does, so every value hashed before keeps its hash.
 */
export function canonicalJson(value: unknown): string {
  if (value === null || typeof value === 'boolean' || typeof value === 'string') return JSON.stringify(value);
  if (typeof value === 'number') {
    if (!Number.isFinite(value)) throw new TypeError('canonical JSON has no place for a non-finite number');
    return JSON.stringify(value);
  }
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`;
  if (typeof value === 'object') {
    const entries = Object.entries(value as Record<string, unknown>)
      .filter(([, v]) => v !== undefined)
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonicalJson(v)}`).join(',')}}`;
  }
  throw new TypeError(`canonical JSON cannot hold a ${typeof value}`);
}

/** SHA-256 (hex) of the canonical JSON of `value`. */
export function canonicalHash(value: unknown): string {
  return createHash('sha256').update(canonicalJson(value)).digest('hex');
}

import { createHash } from 'node:crypto';
import type { ServiceSpec } from '../protocol/service-spec.js';

/** JSON with object keys sorted, so equal values always serialize the same. */
export function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`;
  if (value !== null && typeof value === 'object') {
    const entries = Object.entries(value as Record<string, unknown>)
      .filter(([, v]) => v !== undefined)
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonicalJson(v)}`).join(',')}}`;
  }
  return JSON.stringify(value);
}

/** SHA-256 of a resolved spec: equal hashes mean the running process needs no change. */
export function specHash(spec: ServiceSpec): string {
  return createHash('sha256').update(canonicalJson(spec)).digest('hex');
}

/** SHA-256 of a whole desired set, to tell a resend of a generation from a conflicting one. */
export function desiredSetHash(services: readonly ServiceSpec[]): string {
  return createHash('sha256').update(canonicalJson(services)).digest('hex');
}

import { canonicalHash } from '../../kit/canonical-json.js';
import type { ServiceSpec } from '../../protocol/service-spec.js';

/** SHA-256 of a resolved spec: equal hashes mean the running process needs no change. */
export function specHash(spec: ServiceSpec): string {
  return canonicalHash(spec);
}

/** SHA-256 of a whole desired set, to tell a resend of a generation from a conflicting one. */
export function desiredSetHash(services: readonly ServiceSpec[]): string {
  return canonicalHash(services);
}

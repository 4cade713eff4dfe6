import { canonicalJson } from '../../kit/canonical-json.js';
import type { ServiceSpec } from '../../protocol/service-spec.js';

/** Fields listed at most per service (a spec has far fewer). */
export const MAX_CHANGED_FIELDS = 64;

/**
 * What a new spec changes of the one a host runs, as field names for a plan: `command`,
 * `args`, `healthCheck`, `image`, … and, for the environment, `env +KEY` (added), `env -KEY`
 * (removed) and `env ~KEY` (value changed): keys only, never values, which may be secrets.
 * Empty when nothing changed. Pure; fields in name order, env keys after them in key order.
 */
export function specChanges(before: ServiceSpec, after: ServiceSpec): string[] {
  const a = before as unknown as Record<string, unknown>;
  const b = after as unknown as Record<string, unknown>;
  const changed: string[] = [];
  const fields = [...new Set([...Object.keys(a), ...Object.keys(b)])].filter((k) => k !== 'env').sort();
  for (const field of fields) {
    if (canonicalJson(a[field] ?? null) !== canonicalJson(b[field] ?? null)) changed.push(field);
  }
  const envA = (a.env ?? {}) as Record<string, string>;
  const envB = (b.env ?? {}) as Record<string, string>;
  for (const key of [...new Set([...Object.keys(envA), ...Object.keys(envB)])].sort()) {
    if (!(key in envA)) changed.push(`env +${key}`);
    else if (!(key in envB)) changed.push(`env -${key}`);
    else if (envA[key] !== envB[key]) changed.push(`env ~${key}`);
  }
  return changed.slice(0, MAX_CHANGED_FIELDS);
}

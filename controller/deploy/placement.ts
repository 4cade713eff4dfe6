/**
 * Placement: which host runs each service. Pure; the deploy route feeds it the eligible hosts
 * and the previous placement, and stores what it returns.
 *
 * Contract:
 * - A service whose constraint names hosts (`hosts`) or labels (`labels`, all must match) may
 *   only go to a host that satisfies it; no constraint means anywhere.
 * - Stability: a service stays on the host it had, as long as that host is still eligible.
 * - New or displaced services go round robin: to the eligible host with the fewest services so
 *   far, ties broken by a cursor that walks the hosts in name order, so equal hosts take turns.
 * - If any service has no eligible host, nothing is placed and every such service is named.
 */

export interface PlacementConstraint {
  readonly hosts?: readonly string[];
  readonly labels?: Readonly<Record<string, string>>;
}

export interface PlaceableService {
  readonly name: string;
  readonly placement?: PlacementConstraint | undefined;
}

export interface CandidateHost {
  readonly name: string;
  readonly labels: Readonly<Record<string, string>>;
}

export interface PlacementDecision {
  readonly service: string;
  readonly host: string;
  /** `kept` on the previous host, `placed` new, `moved` from a host no longer eligible. */
  readonly change: 'kept' | 'placed' | 'moved';
  readonly previousHost: string | null;
}

export type PlacementResult =
  | { readonly ok: true; readonly decisions: readonly PlacementDecision[] }
  | { readonly ok: false; readonly unplaceable: readonly { service: string; reason: string }[] };

export function satisfies(host: CandidateHost, constraint: PlacementConstraint | undefined): boolean {
  if (!constraint) return true;
  if (constraint.hosts && constraint.hosts.length > 0 && !constraint.hosts.includes(host.name)) return false;
  for (const [key, value] of Object.entries(constraint.labels ?? {})) {
    if (host.labels[key] !== value) return false;
  }
  return true;
}

function describe(constraint: PlacementConstraint | undefined): string {
  const parts: string[] = [];
  if (constraint?.hosts?.length) parts.push(`hosts ${constraint.hosts.join(', ')}`);
  const labels = Object.entries(constraint?.labels ?? {});
  if (labels.length) parts.push(`labels ${labels.map(([k, v]) => `${k}=${v}`).join(', ')}`);
  return parts.length ? parts.join(' and ') : 'any host';
}

export function place(
  services: readonly PlaceableService[],
  hosts: readonly CandidateHost[],
  previous: ReadonlyMap<string, string>,
): PlacementResult {
  const ordered = [...hosts].sort((a, b) => a.name.localeCompare(b.name));
  const load = new Map<string, number>(ordered.map((h) => [h.name, 0]));
  const byName = new Map(ordered.map((h) => [h.name, h]));
  const decisions = new Map<string, PlacementDecision>();
  const unplaceable: { service: string; reason: string }[] = [];

  // First pass: keep every service that may stay where it is, so new ones see the true load.
  const pending: PlaceableService[] = [];
  for (const svc of services) {
    const prev = previous.get(svc.name);
    const host = prev === undefined ? undefined : byName.get(prev);
    if (host && satisfies(host, svc.placement)) {
      decisions.set(svc.name, {
        service: svc.name,
        host: host.name,
        change: 'kept',
        previousHost: prev ?? null,
      });
      load.set(host.name, (load.get(host.name) ?? 0) + 1);
    } else {
      pending.push(svc);
    }
  }

  let cursor = 0;
  for (const svc of pending) {
    const eligible = ordered.filter((h) => satisfies(h, svc.placement));
    if (eligible.length === 0) {
      unplaceable.push({
        service: svc.name,
        reason: `no eligible online host for ${describe(svc.placement)}`,
      });
      continue;
    }
    const fewest = Math.min(...eligible.map((h) => load.get(h.name) ?? 0));
    // Walk from the cursor so ties rotate instead of always landing on the first name.
    let chosen: CandidateHost | undefined;
    for (let i = 0; i < ordered.length && !chosen; i++) {
      const candidate = ordered[(cursor + i) % ordered.length];
      if (candidate && eligible.includes(candidate) && (load.get(candidate.name) ?? 0) === fewest) {
        chosen = candidate;
        cursor = (ordered.indexOf(candidate) + 1) % ordered.length;
      }
    }
    if (!chosen) continue; // unreachable: some eligible host has the fewest
    load.set(chosen.name, (load.get(chosen.name) ?? 0) + 1);
    const prev = previous.get(svc.name) ?? null;
    decisions.set(svc.name, {
      service: svc.name,
      host: chosen.name,
      change: prev ? 'moved' : 'placed',
      previousHost: prev,
    });
  }

  if (unplaceable.length > 0) return { ok: false, unplaceable };
  return { ok: true, decisions: services.map((s) => decisions.get(s.name)).filter((d) => d !== undefined) };
}

/**
 * Placement: which host runs each instance of each service. Pure; the deploy code and the
 * scheduler feed it the hosts with what each may do now and the current placement, and store
 * what it returns.
 *
 * Contract:
 * - A service has one instance named after it, or with `count: N` the instances `name#1` …
 *   `name#N`, or with `everyHost` one instance (named after it) on every eligible host.
 * - A service whose constraint names hosts (`hosts`) or labels (`labels`, all must match) may
 *   only go to a host that satisfies it; no constraint means anywhere.
 * - Instances of one service go to different hosts unless `spread: false`.
 * - Stability: an instance stays on the host it had while that host `holds` (it may be offline
 *   for a while) and still satisfies the constraint.
 * - New or displaced instances go to a host that `accepts` (online and eligible): the one with
 *   the fewest instances so far, ties broken by a cursor that walks the hosts in name order, so
 *   equal hosts take turns.
 * - An instance no host can take is `pending` with the reason; the others are still placed.
 */

export interface PlacementConstraint {
  readonly hosts?: readonly string[] | undefined;
  readonly labels?: Readonly<Record<string, string>> | undefined;
}

export interface PlaceableService {
  readonly name: string;
  readonly placement?: PlacementConstraint | undefined;
  /** Undefined: one instance named `name`; N: `name#1` … `name#N`. */
  readonly count?: number | undefined;
  /** At most one instance per host (default true). */
  readonly spread?: boolean | undefined;
  /** One instance on every eligible host that satisfies the constraint. */
  readonly everyHost?: boolean | undefined;
}

export interface CandidateHost {
  readonly name: string;
  readonly labels: Readonly<Record<string, string>>;
  /** May take new instances: online and eligible. Default true. */
  readonly accepts?: boolean;
  /** Keeps the instances it has (not lost, decommissioned or ineligible). Default `accepts`. */
  readonly holds?: boolean;
}

/** Where an instance runs now. An every-host service has one per host, all of the same name. */
export interface CurrentInstance {
  readonly instance: string;
  readonly host: string;
}

export interface PlacementDecision {
  readonly instance: string;
  readonly service: string;
  readonly host: string;
  /** `kept` on its host, `placed` new, `moved` from a host that no longer holds it. */
  readonly change: 'kept' | 'placed' | 'moved';
  readonly previousHost: string | null;
}

export interface PendingPlacement {
  readonly instance: string;
  readonly service: string;
  readonly reason: string;
}

export interface PlacementResult {
  /** In the order of `services`, each service's instances in order (every-host: by host name). */
  readonly decisions: readonly PlacementDecision[];
  readonly pending: readonly PendingPlacement[];
}

/** The instance names of a service that is not every-host. */
export function instanceNames(svc: { readonly name: string; readonly count?: number | undefined }): string[] {
  if (svc.count === undefined) return [svc.name];
  return Array.from({ length: svc.count }, (_, i) => `${svc.name}#${i + 1}`);
}

/** The service an instance belongs to (`api#2` → `api`). */
export const serviceOfInstance = (instance: string): string => instance.split('#', 1)[0] ?? instance;

export function satisfies(host: CandidateHost, constraint: PlacementConstraint | undefined): boolean {
  if (!constraint) return true;
  if (constraint.hosts && constraint.hosts.length > 0 && !constraint.hosts.includes(host.name)) return false;
  for (const [key, value] of Object.entries(constraint.labels ?? {})) {
    if (host.labels[key] !== value) return false;
  }
  return true;
}

export function describeConstraint(constraint: PlacementConstraint | undefined): string {
  const parts: string[] = [];
  if (constraint?.hosts?.length) parts.push(`hosts ${constraint.hosts.join(', ')}`);
  const labels = Object.entries(constraint?.labels ?? {});
  if (labels.length) parts.push(`labels ${labels.map(([k, v]) => `${k}=${v}`).join(', ')}`);
  return parts.length ? parts.join(' and ') : 'any host';
}

const constraintKey = (c: PlacementConstraint | undefined): string =>
  c ? JSON.stringify([c.hosts ?? [], Object.entries(c.labels ?? {}).sort()]) : '';

export function place(
  services: readonly PlaceableService[],
  hosts: readonly CandidateHost[],
  current: readonly CurrentInstance[],
): PlacementResult {
  const ordered = [...hosts].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  const n = ordered.length;
  const index = new Map(ordered.map((h, i) => [h.name, i]));
  const accepts = ordered.map((h) => h.accepts ?? true);
  const holds = ordered.map((h, i) => h.holds ?? accepts[i] ?? true);
  const load = new Int32Array(n);
  const previous = new Map<string, string[]>();
  for (const c of current) {
    const list = previous.get(c.instance);
    if (list) list.push(c.host);
    else previous.set(c.instance, [c.host]);
  }
  // Hosts that satisfy a constraint, by constraint: most services share a handful.
  const satisfying = new Map<string, number[]>();
  const matching = (c: PlacementConstraint | undefined): number[] => {
    const key = constraintKey(c);
    let list = satisfying.get(key);
    if (!list) {
      list = [];
      for (let i = 0; i < n; i++) if (satisfies(ordered[i] as CandidateHost, c)) list.push(i);
      satisfying.set(key, list);
    }
    return list;
  };

  const decided = new Map<PlaceableService, (PlacementDecision | PendingPlacement)[]>();
  const used = new Map<PlaceableService, Set<number>>();
  const open: { svc: PlaceableService; instance: string; slot: number }[] = [];

  // First pass: every-host services and every instance that may stay where it is, so the
  // instances placed after them see the true load.
  for (const svc of services) {
    const out: (PlacementDecision | PendingPlacement)[] = [];
    const mine = new Set<number>();
    decided.set(svc, out);
    used.set(svc, mine);
    if (svc.everyHost) {
      const had = new Set(previous.get(svc.name) ?? []);
      for (const i of matching(svc.placement)) {
        const host = ordered[i] as CandidateHost;
        const kept = had.has(host.name) && holds[i];
        if (!kept && !accepts[i]) continue;
        load[i] = (load[i] ?? 0) + 1;
        out.push({
          instance: svc.name,
          service: svc.name,
          host: host.name,
          change: kept ? 'kept' : 'placed',
          previousHost: kept ? host.name : null,
        });
      }
      if (out.length === 0) {
        out.push({
          instance: svc.name,
          service: svc.name,
          reason: `no eligible online host for ${describeConstraint(svc.placement)}`,
        });
      }
      continue;
    }
    const spread = svc.spread ?? true;
    for (const instance of instanceNames(svc)) {
      let keptOn = -1;
      for (const name of previous.get(instance) ?? []) {
        const i = index.get(name);
        if (i === undefined || !holds[i] || !satisfies(ordered[i] as CandidateHost, svc.placement)) continue;
        if (spread && mine.has(i)) continue;
        keptOn = i;
        break;
      }
      if (keptOn >= 0) {
        const name = (ordered[keptOn] as CandidateHost).name;
        mine.add(keptOn);
        load[keptOn] = (load[keptOn] ?? 0) + 1;
        out.push({ instance, service: svc.name, host: name, change: 'kept', previousHost: name });
      } else {
        open.push({ svc, instance, slot: out.length });
        out.push({ instance, service: svc.name, reason: '' });
      }
    }
  }

  // Per constraint: its accepting hosts in name order, and a lower bound of their load (loads
  // only grow), so a scan from the cursor stops at the first host that has it.
  const groups = new Map<string, { hosts: number[]; floor: number }>();
  const groupOf = (c: PlacementConstraint | undefined) => {
    const key = constraintKey(c);
    let g = groups.get(key);
    if (!g) {
      g = { hosts: matching(c).filter((i) => accepts[i]), floor: 0 };
      groups.set(key, g);
    }
    return g;
  };
  let cursor = 0;
  for (const { svc, instance, slot } of open) {
    const spread = svc.spread ?? true;
    const mine = used.get(svc) as Set<number>;
    const group = groupOf(svc.placement);
    const list = group.hosts;
    const checkSpread = spread && mine.size > 0;
    // The first member at or after the cursor: members are in name order.
    let lo = 0;
    let hi = list.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if ((list[mid] as number) < cursor) lo = mid + 1;
      else hi = mid;
    }
    let best = -1;
    let bestLoad = 0;
    let lowest = Number.POSITIVE_INFINITY;
    let scanned = true;
    for (let k = 0; k < list.length; k++) {
      const i = list[(lo + k) % list.length] as number;
      const l = load[i] as number;
      if (l < lowest) lowest = l;
      if (checkSpread && mine.has(i)) continue;
      // In turn order, so only a strictly lower load beats the one found first.
      if (best < 0 || l < bestLoad) {
        best = i;
        bestLoad = l;
        if (l <= group.floor) {
          scanned = false;
          break;
        }
      }
    }
    // A whole scan saw every member's load: the lowest is the new floor.
    if (scanned && lowest !== Number.POSITIVE_INFINITY) group.floor = lowest;
    const accepting = list.length;
    const out = decided.get(svc) as (PlacementDecision | PendingPlacement)[];
    const prev = previous.get(instance)?.[0] ?? null;
    if (best < 0) {
      out[slot] = {
        instance,
        service: svc.name,
        reason:
          accepting === 0
            ? `no eligible online host for ${describeConstraint(svc.placement)}`
            : `spread: each of the ${accepting} eligible hosts already runs an instance of ${svc.name}`,
      };
      continue;
    }
    cursor = (best + 1) % n;
    mine.add(best);
    load[best] = (load[best] ?? 0) + 1;
    out[slot] = {
      instance,
      service: svc.name,
      host: (ordered[best] as CandidateHost).name,
      change: prev === null ? 'placed' : 'moved',
      previousHost: prev,
    };
  }

  const decisions: PlacementDecision[] = [];
  const pending: PendingPlacement[] = [];
  for (const svc of services) {
    for (const d of decided.get(svc) ?? []) {
      if ('host' in d) decisions.push(d);
      else pending.push(d);
    }
  }
  return { decisions, pending };
}

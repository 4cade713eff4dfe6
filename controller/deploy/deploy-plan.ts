import {
  placementRule,
  toServiceSpec,
  type DeploymentService,
  type PendingInstance,
  type PlanEntry,
} from '../../protocol/deployment.js';
import { CorralError, ErrorCode } from '../../protocol/errors.js';
import { specHashOf, type DesiredEntry, type FleetSnapshot, type HostInfo } from './desired-state.js';
import { place, serviceOfInstance, type CandidateHost, type PlaceableService } from './placement.js';
import { specChanges } from './spec-diff.js';

export interface DeployPlan {
  readonly plan: PlanEntry[];
  /** The whole desired state after the change. */
  readonly next: DesiredEntry[];
  /** Instances deployed now that the services no longer have. */
  readonly removed: { service: string; host: string }[];
  /** Instances no host can take now. */
  readonly pending: PendingInstance[];
}

export interface PlanOptions {
  /**
   * `operator` (a deploy): a host keeps its instances only while online, and instances of
   * services the spec no longer has are removed. `scheduler` (the controller on its own): a
   * host keeps its instances until it is lost, and instances of services it does not manage
   * (deployed before it kept specs) stay as they are.
   */
  readonly mode: 'operator' | 'scheduler';
  /** Refuse (CORRAL_ERR_PLACEMENT, nothing changed) when any instance would be pending. */
  readonly refusePending: boolean;
}

/**
 * What placement sees of a host: it accepts new instances while online and eligible; it
 * holds those it has unless it drains (or, see PlanOptions, is not online or is lost). An
 * ineligible host that does not drain keeps what it runs.
 */
export function candidateOf(h: HostInfo, mode: PlanOptions['mode']): CandidateHost {
  const up = h.status === 'online' && !h.decommissioned;
  const draining = h.drainDeadlineMs !== null;
  const holds = !draining && (mode === 'operator' ? up : !h.lost);
  return { name: h.name, labels: h.labels, accepts: up && h.eligible, holds };
}

export function placeableOf(svc: DeploymentService): PlaceableService {
  const rule = placementRule(svc.placement);
  return {
    name: svc.name,
    placement: rule && { hosts: rule.hosts, labels: rule.labels },
    count: svc.count,
    spread: svc.spread,
    everyHost: rule?.everyHost ?? false,
  };
}

/**
 * Where each instance of `services` goes, from the current state (see PlanOptions for what a
 * host may keep). An instance whose host is gone or lost shows as `moved` from it. With
 * `refusePending`, throws CORRAL_ERR_PLACEMENT naming every instance no host can take. Pure.
 */
export function planDeploy(
  snap: FleetSnapshot,
  services: readonly DeploymentService[],
  o: PlanOptions = { mode: 'operator', refusePending: true },
): DeployPlan {
  const hostName = (id: string): string => snap.hosts.get(id)?.name ?? id;
  const active = [...snap.hosts.values()].filter((h) => !h.decommissioned);
  const byName = new Map(active.map((h) => [h.name, h]));
  const specByName = new Map(services.map((s) => [s.name, s]));
  const managed = snap.desired.filter((d) => specByName.has(serviceOfInstance(d.service)));
  const candidates = active.map((h) => candidateOf(h, o.mode));
  if (o.refusePending && !candidates.some((c) => c.accepts)) {
    throw new CorralError(
      ErrorCode.PLACEMENT,
      `no host is online to place on (${active.length} enrolled, none online); nothing was changed`,
    );
  }
  const placed = place(
    services.map(placeableOf),
    candidates,
    managed.map((d) => ({ instance: d.service, host: hostName(d.hostId) })),
  );
  const pending = placed.pending.map((p) => ({ service: p.instance, reason: p.reason }));
  if (o.refusePending && pending.length > 0) {
    const list = pending.map((u) => `${u.service} (${u.reason})`).join('; ');
    throw new CorralError(
      ErrorCode.PLACEMENT,
      `cannot place ${pending.length} of ${pending.length + placed.decisions.length} instances; nothing was changed (--allow-pending stores the spec and places them once a host fits): ${list}`,
    );
  }
  const plan: PlanEntry[] = placed.decisions.map((d) => ({
    service: d.instance,
    host: d.host,
    change: d.change,
    previousHost: d.previousHost,
  }));
  const before = new Map(snap.desired.map((d) => [`${hostName(d.hostId)}\u0000${d.service}`, d]));
  const next: DesiredEntry[] = plan.map((p, i) => {
    const host = byName.get(p.host);
    const svc = specByName.get(serviceOfInstance(p.service));
    if (!host || !svc)
      throw new CorralError(ErrorCode.INTERNAL, 'placement named an unknown host or service');
    const s = toServiceSpec(svc, p.service);
    const specHash = specHashOf(s);
    // What changes of the copy running now, and whether the agent restarts it for that.
    const old = before.get(`${p.previousHost ?? p.host}\u0000${p.service}`);
    if (old) {
      const changed = specChanges(old.spec, s);
      plan[i] = { ...p, changed, restarts: p.change === 'moved' || old.specHash !== specHash };
    } else plan[i] = { ...p, changed: [], restarts: false };
    return { hostId: host.id, service: p.service, spec: s, specHash };
  });
  const unmanaged = snap.desired.filter((d) => !specByName.has(serviceOfInstance(d.service)));
  const nextKeys = new Set(next.map((e) => `${e.hostId}\u0000${e.service}`));
  const movedFrom = new Set(plan.map((p) => `${p.previousHost ?? ''}\u0000${p.service}`));
  const removed = (o.mode === 'operator' ? snap.desired : managed)
    .filter((d) => !nextKeys.has(`${d.hostId}\u0000${d.service}`))
    .filter((d) => !movedFrom.has(`${hostName(d.hostId)}\u0000${d.service}`))
    .map((d) => ({ service: d.service, host: hostName(d.hostId) }));
  return { plan, next: o.mode === 'operator' ? next : [...next, ...unmanaged], removed, pending };
}

import { toServiceSpec, type DeploymentSpec, type PlanEntry } from '../../protocol/deployment.js';
import { CorralError, ErrorCode } from '../../protocol/errors.js';
import { specHashOf, type DesiredEntry, type FleetSnapshot } from './desired-state.js';
import { place } from './placement.js';

export interface DeployPlan {
  readonly plan: PlanEntry[];
  /** The whole desired state after the deploy. */
  readonly next: DesiredEntry[];
  /** Services deployed now that the spec no longer has. */
  readonly removed: { service: string; host: string }[];
}

/**
 * Where each service of `spec` goes, from the current state: eligible hosts are online and
 * not decommissioned; a service stays where it is while it may. A service whose host was
 * decommissioned shows as `moved` from it. Throws CORRAL_ERR_PLACEMENT naming every service
 * no host can take. Pure.
 */
export function planDeploy(snap: FleetSnapshot, spec: DeploymentSpec): DeployPlan {
  const hostName = (id: string): string => snap.hosts.get(id)?.name ?? id;
  const active = [...snap.hosts.values()].filter((h) => !h.decommissioned);
  const byName = new Map(active.map((h) => [h.name, h]));
  const eligible = active.filter((h) => h.status === 'online');
  const previous = new Map<string, string>();
  const goneHost = new Map<string, string>();
  for (const d of snap.desired) {
    const h = snap.hosts.get(d.hostId);
    if (h && !h.decommissioned) previous.set(d.service, h.name);
    else goneHost.set(d.service, hostName(d.hostId));
  }
  if (eligible.length === 0) {
    throw new CorralError(
      ErrorCode.PLACEMENT,
      `no host is online to place on (${active.length} enrolled, none online); nothing was changed`,
    );
  }
  const placed = place(spec.services, eligible, previous);
  if (!placed.ok) {
    const list = placed.unplaceable.map((u) => `${u.service} (${u.reason})`).join('; ');
    throw new CorralError(
      ErrorCode.PLACEMENT,
      `cannot place ${placed.unplaceable.length} of ${spec.services.length} services; nothing was changed: ${list}`,
    );
  }
  const plan: PlanEntry[] = placed.decisions.map((d) => {
    const gone = goneHost.get(d.service);
    return gone !== undefined
      ? { service: d.service, host: d.host, change: 'moved', previousHost: gone }
      : { service: d.service, host: d.host, change: d.change, previousHost: d.previousHost };
  });
  const specByName = new Map(spec.services.map((s) => [s.name, s]));
  const next: DesiredEntry[] = plan.map((p) => {
    const host = byName.get(p.host);
    const svc = specByName.get(p.service);
    if (!host || !svc)
      throw new CorralError(ErrorCode.INTERNAL, 'placement named an unknown host or service');
    const s = toServiceSpec(svc);
    return { hostId: host.id, service: p.service, spec: s, specHash: specHashOf(s) };
  });
  const removed = snap.desired
    .filter((d) => !specByName.has(d.service))
    .map((d) => ({ service: d.service, host: hostName(d.hostId) }));
  return { plan, next, removed };
}

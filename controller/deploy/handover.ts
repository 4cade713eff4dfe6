import type { Kysely } from 'kysely';
import type { ControllerDatabase } from '../db/schema.js';
import type { DeployPlan } from './deploy-plan.js';
import type { DesiredEntry, FleetSnapshot, HostInfo } from './desired-state.js';

/** An instance left on the host it moves away from, until its replacement runs. */
export interface HandoverWait {
  readonly service: string;
  readonly from: string;
  readonly to: readonly string[];
}

/** An instance stopped on the host it moved away from, and why now. */
export interface HandoverRelease {
  readonly service: string;
  readonly host: string;
  readonly why: 'replaced' | 'deadline';
}

export interface HandedOver extends DeployPlan {
  readonly waiting: readonly HandoverWait[];
  readonly released: readonly HandoverRelease[];
}

const key = (hostId: string, service: string): string => `${hostId}\u0000${service}`;

/** A host an instance may be left on: it is up and still answers (not lost or decommissioned). */
const reachable = (h: HostInfo | undefined): h is HostInfo =>
  h !== undefined && !h.decommissioned && !h.lost && h.status === 'online';

/**
 * Instances `planned` takes off a reachable host while placing the same instance elsewhere:
 * the moves that make-before-break applies to. Cheap, so callers read what runs only when
 * there are some.
 */
export function handoverCandidates(snap: FleetSnapshot, planned: DeployPlan): DesiredEntry[] {
  const nextKeys = new Set(planned.next.map((e) => key(e.hostId, e.service)));
  const placedOn = new Set(planned.next.map((e) => e.service));
  return snap.desired.filter(
    (d) =>
      !nextKeys.has(key(d.hostId, d.service)) &&
      placedOn.has(d.service) &&
      reachable(snap.hosts.get(d.hostId)),
  );
}

/**
 * Make-before-break: an instance that moves off a reachable host (drained, relabelled) stays
 * in that host's set until `ready` says its replacement runs on a host it is placed on, or
 * until the host's drain deadline has passed, whichever comes first; then it is stopped there.
 * Instances off hosts that are not reachable go at once (nothing could stop them anyway).
 * Pure: `ready(hostId, instance)` is what the hosts last reported.
 */
export function handOver(
  snap: FleetSnapshot,
  planned: DeployPlan,
  ready: (hostId: string, instance: string) => boolean,
  nowMs: number,
): HandedOver {
  const candidates = handoverCandidates(snap, planned);
  if (candidates.length === 0) return { ...planned, waiting: [], released: [] };
  const placed = new Map<string, string[]>();
  for (const e of planned.next) placed.set(e.service, [...(placed.get(e.service) ?? []), e.hostId]);
  const name = (id: string): string => snap.hosts.get(id)?.name ?? id;
  const retained: DesiredEntry[] = [];
  const waiting: HandoverWait[] = [];
  const released: HandoverRelease[] = [];
  for (const d of candidates) {
    const from = snap.hosts.get(d.hostId) as HostInfo;
    const targets = (placed.get(d.service) ?? []).filter((id) => id !== d.hostId);
    if (targets.some((id) => ready(id, d.service))) {
      released.push({ service: d.service, host: from.name, why: 'replaced' });
    } else if (from.drainDeadlineMs !== null && nowMs >= from.drainDeadlineMs) {
      released.push({ service: d.service, host: from.name, why: 'deadline' });
    } else {
      retained.push(d);
      waiting.push({ service: d.service, from: from.name, to: targets.map(name) });
    }
  }
  const kept = new Set(retained.map((d) => key(name(d.hostId), d.service)));
  return {
    ...planned,
    next: [...planned.next, ...retained],
    removed: planned.removed.filter((r) => !kept.has(key(r.host, r.service))),
    waiting,
    released,
  };
}

/**
 * `hostId\0instance` of every instance its host reports running at (or past) the generation
 * that carried it, as the agent last accepted it: what `handOver` calls ready.
 */
export async function loadRunning(db: Kysely<ControllerDatabase>): Promise<Set<string>> {
  const rows = await db
    .selectFrom('service_observed as o')
    .innerJoin('hosts as h', 'h.id', 'o.host_id')
    .innerJoin('service_dispatch as d', (j) =>
      j.onRef('d.host_id', '=', 'o.host_id').onRef('d.service', '=', 'o.service'),
    )
    .select(['o.host_id', 'o.service', 'h.generation', 'd.generation as dispatched', 'd.state as dispatch'])
    .where('o.state', '=', 'running')
    .where('d.desired', '=', 'running')
    .execute();
  return new Set(
    rows
      .filter((r) => r.dispatch === 'applied' && r.generation >= r.dispatched)
      .map((r) => key(r.host_id, r.service)),
  );
}

export const runningKey = key;

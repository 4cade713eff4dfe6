import { createHash } from 'node:crypto';
import type { Kysely } from 'kysely';
import { OFFLINE_AFTER_INTERVALS } from '../../protocol/constants.js';
import type { HostStatus } from '../../protocol/host.js';
import { Labels } from '../../protocol/common.js';
import { ServiceSpec } from '../../protocol/service-spec.js';
import { canonicalHash } from '../../kit/canonical-json.js';
import type { ControllerDatabase } from '../db/schema.js';
import { deriveHostStatus } from '../fleet/host-status.js';
import type { Liveness } from '../fleet/host-store.js';
import { decodeJsonColumn } from '../db/json-column.js';

type Db = Kysely<ControllerDatabase>;

export interface HostInfo {
  readonly id: string;
  readonly name: string;
  readonly address: string;
  readonly agentPort: number;
  readonly labels: Readonly<Record<string, string>>;
  readonly status: HostStatus;
  readonly decommissioned: boolean;
  /**
   * Decommissioned, or offline for longer than the reschedule delay: the scheduler moves its
   * instances elsewhere (nothing on the host is touched until it is back).
   */
  readonly lost: boolean;
  /** Takes new instances (eligibility on, not draining). */
  readonly eligible: boolean;
  /** Draining: its instances move away; stopped there by this time (ms) at the latest. */
  readonly drainDeadlineMs: number | null;
}

/** One service placed on one host. */
export interface DesiredEntry {
  readonly hostId: string;
  readonly service: string;
  readonly spec: ServiceSpec;
  readonly specHash: string;
}

export interface HostDesired {
  readonly generation: number;
  readonly setHash: string;
  readonly ackedGeneration: number;
}

/** What the deploy code reads before it decides anything. */
export interface FleetSnapshot {
  readonly hosts: ReadonlyMap<string, HostInfo>;
  readonly desired: readonly DesiredEntry[];
  readonly hostDesired: ReadonlyMap<string, HostDesired>;
}

/** One host's new whole set, and the generation it goes out with. */
export interface HostSet {
  readonly host: HostInfo;
  readonly generation: number;
  readonly setHash: string;
  /** Sorted by name: the same set always serializes the same, so a resend is a no-op. */
  readonly services: readonly ServiceSpec[];
  /** Services it had before that the new set drops. */
  readonly dropped: readonly string[];
  readonly changed: boolean;
}

export const sha256 = (text: string): string => createHash('sha256').update(text).digest('hex');
export const specHashOf = (spec: ServiceSpec): string => canonicalHash(spec);
const setHashOf = (services: readonly ServiceSpec[]): string => canonicalHash(services);

/**
 * A host is lost once it has been offline (OFFLINE_AFTER_INTERVALS without a heartbeat) for
 * `rescheduleAfterMs` more; null: only decommissioning loses a host.
 */
export function isLost(
  lastSeenMs: number | null,
  decommissioned: boolean,
  live: Liveness,
  rescheduleAfterMs: number | null,
): boolean {
  if (decommissioned) return true;
  if (rescheduleAfterMs === null || lastSeenMs === null) return false;
  return live.nowMs - lastSeenMs >= OFFLINE_AFTER_INTERVALS * live.intervalMs + rescheduleAfterMs;
}

export async function loadSnapshot(
  db: Db,
  live: Liveness,
  rescheduleAfterMs: number | null = null,
): Promise<FleetSnapshot> {
  const [hostRows, desiredRows, hostDesiredRows] = await Promise.all([
    db
      .selectFrom('hosts')
      .select([
        'id',
        'name',
        'address',
        'agent_port',
        'labels',
        'last_seen',
        'decommissioned_at',
        'eligible',
        'drain_deadline',
      ])
      .execute(),
    db.selectFrom('desired_services').selectAll().orderBy('service').execute(),
    db.selectFrom('host_desired').selectAll().execute(),
  ]);
  const hosts = new Map<string, HostInfo>();
  for (const r of hostRows) {
    const decommissioned = r.decommissioned_at !== null;
    const lastSeenMs = r.last_seen === null ? null : Date.parse(r.last_seen);
    hosts.set(r.id, {
      id: r.id,
      name: r.name,
      address: r.address,
      agentPort: r.agent_port,
      labels: decodeJsonColumn(Labels, r.labels, { table: 'hosts', column: 'labels', row: r.id }),
      status: deriveHostStatus({ lastSeenMs, decommissioned }, live.nowMs, live.intervalMs),
      decommissioned,
      lost: isLost(lastSeenMs, decommissioned, live, rescheduleAfterMs),
      eligible: r.eligible !== 0 && r.drain_deadline === null,
      drainDeadlineMs: r.drain_deadline === null ? null : Date.parse(r.drain_deadline),
    });
  }
  return {
    hosts,
    desired: desiredRows.map((r) => ({
      hostId: r.host_id,
      service: r.service,
      spec: decodeJsonColumn(ServiceSpec, r.spec, {
        table: 'desired_services',
        column: 'spec',
        row: `${r.host_id}/${r.service}`,
      }),
      specHash: r.spec_hash,
    })),
    hostDesired: new Map(
      hostDesiredRows.map((r) => [
        r.host_id,
        { generation: r.generation, setHash: r.set_hash, ackedGeneration: r.acked_generation },
      ]),
    ),
  };
}

/**
 * The sets to send: every live host whose set changes or whose agent has not accepted its
 * current generation yet, plus (with `resendAll`) every live host that has services in
 * `next`, so a deploy converges the whole fleet and in-sync hosts answer `unchanged`.
 * A generation moves only when the set changes.
 */
export function hostSets(snap: FleetSnapshot, next: readonly DesiredEntry[], resendAll: boolean): HostSet[] {
  const group = (entries: readonly DesiredEntry[]) => {
    const by = new Map<string, DesiredEntry[]>();
    for (const e of entries) by.set(e.hostId, [...(by.get(e.hostId) ?? []), e]);
    return by;
  };
  const before = group(snap.desired);
  const after = group(next);
  const ids = new Set([...before.keys(), ...after.keys(), ...snap.hostDesired.keys()]);
  const sets: HostSet[] = [];
  for (const id of ids) {
    const host = snap.hosts.get(id);
    if (!host || host.decommissioned) continue;
    const entries = [...(after.get(id) ?? [])].sort((a, b) => (a.service < b.service ? -1 : 1));
    const services = entries.map((e) => e.spec);
    const setHash = setHashOf(services);
    const current = snap.hostDesired.get(id);
    const changed = current ? current.setHash !== setHash : services.length > 0;
    const behind = current !== undefined && current.ackedGeneration < current.generation;
    if (!changed && !behind && !(resendAll && services.length > 0)) continue;
    const keep = new Set(entries.map((e) => e.service));
    sets.push({
      host,
      generation: changed ? (current?.generation ?? 0) + 1 : (current?.generation ?? 1),
      setHash,
      services,
      dropped: (before.get(id) ?? []).map((e) => e.service).filter((s) => !keep.has(s)),
      changed,
    });
  }
  return sets.sort((a, b) => a.host.name.localeCompare(b.host.name));
}

/**
 * Replaces the desired state with `next` and marks every service of every host in `sets` as
 * pending dispatch (dropped ones as `removed` until their host accepts a set without them).
 * Rows on decommissioned hosts are dropped. Runs inside the caller's transaction.
 */
export async function storeDesired(
  trx: Db,
  snap: FleetSnapshot,
  next: readonly DesiredEntry[],
  sets: readonly HostSet[],
  nowIso: string,
): Promise<void> {
  const key = (e: { hostId: string; service: string }) => `${e.hostId}\u0000${e.service}`;
  const nextByKey = new Map(next.map((e) => [key(e), e]));
  const beforeByKey = new Map(snap.desired.map((e) => [key(e), e]));
  for (const e of snap.desired) {
    if (!nextByKey.has(key(e))) {
      await trx
        .deleteFrom('desired_services')
        .where('host_id', '=', e.hostId)
        .where('service', '=', e.service)
        .execute();
    }
  }
  for (const e of next) {
    if (beforeByKey.get(key(e))?.specHash === e.specHash) continue;
    await trx
      .insertInto('desired_services')
      .values({
        host_id: e.hostId,
        service: e.service,
        spec: JSON.stringify(e.spec),
        spec_hash: e.specHash,
        updated_at: nowIso,
      })
      .onConflict((oc) =>
        oc
          .columns(['host_id', 'service'])
          .doUpdateSet({ spec: JSON.stringify(e.spec), spec_hash: e.specHash, updated_at: nowIso }),
      )
      .execute();
  }
  const gone = [...snap.hosts.values()].filter((h) => h.decommissioned).map((h) => h.id);
  if (gone.length > 0) await trx.deleteFrom('service_dispatch').where('host_id', 'in', gone).execute();

  for (const set of sets) {
    await trx
      .insertInto('host_desired')
      .values({
        host_id: set.host.id,
        generation: set.generation,
        set_hash: set.setHash,
        acked_generation: 0,
        updated_at: nowIso,
      })
      .onConflict((oc) =>
        oc
          .column('host_id')
          .doUpdateSet({ generation: set.generation, set_hash: set.setHash, updated_at: nowIso }),
      )
      .execute();
    // Whatever else the host had pending removal stays `removed` and goes out again.
    await trx
      .updateTable('service_dispatch')
      .set({
        desired: 'removed',
        state: 'pending',
        reason: null,
        generation: set.generation,
        updated_at: nowIso,
      })
      .where('host_id', '=', set.host.id)
      .execute();
    const rows = [
      ...set.services.map((s) => ({ service: s.name, desired: 'running' })),
      ...set.dropped.map((service) => ({ service, desired: 'removed' })),
    ];
    for (const r of rows) {
      const values = {
        desired: r.desired,
        state: 'pending',
        reason: null,
        generation: set.generation,
        updated_at: nowIso,
      };
      await trx
        .insertInto('service_dispatch')
        .values({ host_id: set.host.id, service: r.service, ...values })
        .onConflict((oc) => oc.columns(['host_id', 'service']).doUpdateSet(values))
        .execute();
    }
  }
}

/** Records what a host's agent answered, for its set and every service in it. */
export async function storeOutcome(
  trx: Db,
  hostId: string,
  outcome: { ok: true; generation: number } | { ok: false; reason: string },
  nowIso: string,
): Promise<void> {
  if (outcome.ok) {
    await trx
      .updateTable('host_desired')
      .set({ generation: outcome.generation, acked_generation: outcome.generation, updated_at: nowIso })
      .where('host_id', '=', hostId)
      .execute();
    await trx
      .deleteFrom('service_dispatch')
      .where('host_id', '=', hostId)
      .where('desired', '=', 'removed')
      .execute();
    await trx
      .updateTable('service_dispatch')
      .set({ state: 'applied', reason: null, generation: outcome.generation, updated_at: nowIso })
      .where('host_id', '=', hostId)
      .execute();
    return;
  }
  await trx
    .updateTable('service_dispatch')
    .set({ state: 'failed', reason: outcome.reason.slice(0, 2000), updated_at: nowIso })
    .where('host_id', '=', hostId)
    .execute();
}

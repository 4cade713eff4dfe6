import type { Kysely } from 'kysely';
import type { Logger } from 'pino';
import type { HostStatus } from '../../protocol/host.js';
import type { FleetEventKind } from '../../protocol/fleet-events.js';
import { SingleFlight } from '../../kit/single-flight.js';
import { isoAt, type Clock } from '../clock.js';
import type { ControllerDatabase } from '../db/schema.js';
import { deriveHostStatus } from '../fleet/host-status.js';
import type { FleetEventSink, NewFleetEvent } from './event-log.js';

type Db = Kysely<ControllerDatabase>;

/** Hosts read per statement when checking (one parameter each). */
const HOSTS_PER_READ = 500;
/** Status rows per upsert (3 parameters each): a first start with a large fleet writes them all. */
const STATUS_ROWS_PER_UPSERT = 300;
/** A failed check is tried again after this, in ms. */
const RETRY_MS = 1_000;

const KIND_OF: Readonly<Record<HostStatus, FleetEventKind>> = {
  pending: 'host.enrolled',
  online: 'host.online',
  stale: 'host.stale',
  offline: 'host.offline',
  decommissioned: 'host.decommissioned',
};
/** How far down a status is; a host moves down only by heartbeat age measured while we ran. */
const DOWN_RANK: Readonly<Record<HostStatus, number>> = {
  pending: 0,
  online: 0,
  stale: 1,
  offline: 2,
  decommissioned: 3,
};
const STATUSES: ReadonlySet<string> = new Set(Object.keys(KIND_OF));

export interface HostTransitions {
  /** Loads what was last told and tells what changed while no controller ran. Call once. */
  start(): Promise<void>;
  /**
   * This controller is becoming leader: forgets what it knew and loads what the database says
   * was told (by any controller); the first sweep once it leads tells what changed since, as
   * `start` does. Before `start`, nothing.
   */
  takeOver(): Promise<void>;
  /** Heartbeats of these hosts were committed at `nowMs` (O(hosts given), no database read). */
  seen(hostIds: readonly string[], nowMs: number): void;
  /** A host's pins were revoked (decommission, replace): its status is read and told. */
  revoked(hostId: string): void;
  /** Its `host.enrolled` was appended (in the enrollment's transaction): its status is now pending. */
  enrolled(hostId: string): void;
  /** Runs the checks queued so far (tests, shutdown). */
  settle(): Promise<void>;
  close(): Promise<void>;
}

interface HostRow {
  readonly id: string;
  readonly name: string;
  readonly address: string;
  readonly enrolled_via: string;
  readonly last_seen: string | null;
  readonly decommissioned_at: string | null;
}

/**
 * Host status changes as events (`host.online`, `host.stale`, `host.offline`,
 * `host.decommissioned`), each told once: the status last told is stored per host
 * (`fleet_host_status`) in the transaction that appends its event, so a restart neither
 * repeats nor loses one.
 *
 * No heartbeat scans the fleet: `seen` keeps each host's last heartbeat in a map ordered by it
 * (a heartbeat moves its host to the end), and a sweep every `sweepEveryMs` walks it from the
 * oldest end only as far as hosts that are due to go down, so a sweep costs the hosts that
 * change plus one. Hosts told offline leave the map until their next heartbeat.
 *
 * A host goes stale or offline only by heartbeat age the controller itself waited out: after a
 * start, a host last seen before it counts as seen at the start, so a controller that was down
 * does not declare its whole fleet offline. It comes back online on its first heartbeat.
 */
export function createHostTransitions(o: {
  readonly db: Db;
  readonly sink: FleetEventSink;
  readonly clock: Clock;
  readonly log: Logger;
  readonly intervalMs: number;
  readonly sweepEveryMs: number;
  /** Events are told only while this says so (the leader); default always. */
  readonly leader?: () => boolean;
  /**
   * Other controllers write heartbeats to the same database: each sweep also reads the hosts
   * not told online that heartbeated since the last one (one indexed read of those only).
   */
  readonly peers?: boolean;
}): HostTransitions {
  const { db, clock, log } = o;
  const told = new Map<string, HostStatus>();
  /** Hosts that are not told offline or decommissioned → last heartbeat (ms), oldest first. */
  const beats = new Map<string, number>();
  const dirty = new Set<string>();
  /** Hosts a check is looking at: a heartbeat for one of them is checked again after it. */
  const checking = new Set<string>();
  const checks = new SingleFlight({ name: 'host status events', maxQueued: 1 });
  let startMs = clock.now();
  let sweepTimer: NodeJS.Timeout | undefined;
  let retryTimer: NodeJS.Timeout | undefined;
  let closed = false;
  let started = false;
  const leader = o.leader ?? ((): boolean => true);
  /** Heartbeats committed from this time on (ms, minus an interval of clock skew) are read by the next sweep. */
  let polledMs = clock.now();
  let polling = false;

  const byAge = (seenMs: number, nowMs: number): HostStatus =>
    deriveHostStatus({ lastSeenMs: seenMs, decommissioned: false }, nowMs, o.intervalMs);

  /** What the host's status is now, given what was told last (see the rule above). */
  function statusOf(row: HostRow, prev: HostStatus | undefined, nowMs: number): HostStatus {
    if (row.decommissioned_at !== null) return 'decommissioned';
    if (row.last_seen === null) return 'pending';
    const seenMs = Date.parse(row.last_seen);
    if (byAge(seenMs, nowMs) === 'online') return 'online';
    const waited = byAge(Math.max(seenMs, startMs), nowMs);
    const from = prev ?? 'online';
    return DOWN_RANK[waited] > DOWN_RANK[from] ? waited : from;
  }

  function eventsFor(row: HostRow, prev: HostStatus | undefined, next: HostStatus): NewFleetEvent[] {
    const host = { id: row.id, name: row.name };
    const out: NewFleetEvent[] = [];
    if (prev === undefined) {
      out.push({ kind: 'host.enrolled', host, data: { via: row.enrolled_via, address: row.address } });
      if (next === 'pending') return out;
    }
    out.push({
      kind: KIND_OF[next],
      host,
      data: { from: prev ?? 'pending', lastSeen: row.last_seen },
    });
    return out;
  }

  async function check(): Promise<void> {
    // A follower tells nothing (what it has queued waits; bounded by the hosts): the leader
    // does, and a new leader loads what was told (takeOver).
    if (dirty.size === 0 || !leader()) return;
    const ids = [...dirty];
    dirty.clear();
    // Hosts never told: the sink's onEnrolled marks them pending while their event is written.
    const untold = ids.filter((id) => !told.has(id));
    for (const id of ids) checking.add(id);
    const read: HostRow[] = [];
    try {
      // Read and write in one transaction: a heartbeat cannot commit between what this saw
      // and what it tells (the controller has one connection to the database).
      const changes = await db.transaction().execute(async (trx) => {
        const rows: HostRow[] = [];
        for (let i = 0; i < ids.length; i += HOSTS_PER_READ) {
          rows.push(
            ...(await trx
              .selectFrom('hosts')
              .select(['id', 'name', 'address', 'enrolled_via', 'last_seen', 'decommissioned_at'])
              .where('id', 'in', ids.slice(i, i + HOSTS_PER_READ))
              .execute()),
          );
        }
        // What was told, as stored: another controller may have told it (enrolled there, or led).
        for (let i = 0; i < ids.length; i += HOSTS_PER_READ) {
          const stored = await trx
            .selectFrom('fleet_host_status')
            .select(['host_id', 'status'])
            .where('host_id', 'in', ids.slice(i, i + HOSTS_PER_READ))
            .execute();
          for (const r of stored) if (STATUSES.has(r.status)) told.set(r.host_id, r.status as HostStatus);
        }
        read.push(...rows);
        const nowMs = clock.now();
        const found: { row: HostRow; next: HostStatus }[] = [];
        for (const row of rows) {
          const prev = told.get(row.id);
          const next = statusOf(row, prev, nowMs);
          if (next !== prev) found.push({ row, next });
        }
        if (found.length === 0) return found;
        const nowIso = isoAt(nowMs);
        await o.sink.append(
          trx,
          found.flatMap((c) => eventsFor(c.row, told.get(c.row.id), c.next)),
        );
        for (let i = 0; i < found.length; i += STATUS_ROWS_PER_UPSERT) {
          await trx
            .insertInto('fleet_host_status')
            .values(
              found
                .slice(i, i + STATUS_ROWS_PER_UPSERT)
                .map((c) => ({ host_id: c.row.id, status: c.next, changed_at: nowIso })),
            )
            .onConflict((oc) =>
              oc.column('host_id').doUpdateSet((eb) => ({
                status: eb.ref('excluded.status'),
                changed_at: eb.ref('excluded.changed_at'),
              })),
            )
            .execute();
        }
        return found;
      });
      for (const { row, next } of changes) told.set(row.id, next);
      for (const row of read) {
        const status = told.get(row.id);
        if (status === 'offline' || status === 'decommissioned') beats.delete(row.id);
        else if (row.last_seen !== null) {
          // A heartbeat another controller committed is newer than the one this one saw.
          const seenMs = Math.max(Date.parse(row.last_seen), beats.get(row.id) ?? 0);
          if (seenMs !== beats.get(row.id)) {
            beats.delete(row.id);
            beats.set(row.id, seenMs);
          }
        }
      }
    } catch (err: unknown) {
      for (const id of untold) told.delete(id);
      for (const id of ids) dirty.add(id);
      if (closed) return;
      log.warn({ err, hosts: ids.length }, 'host status events not written; will retry');
      retryTimer ??= setTimeout(() => {
        retryTimer = undefined;
        kick();
      }, RETRY_MS);
      retryTimer.unref();
      return;
    } finally {
      checking.clear();
    }
    // Heartbeats that committed while this ran are looked at again (they may bring a host back).
    kick();
  }

  function kick(): void {
    if (closed || dirty.size === 0) return;
    checks.coalesce('check', check).catch((err: unknown) => log.warn({ err }, 'host status check failed'));
  }

  /** Hosts not told online that heartbeated (through any controller) since the last poll. */
  async function poll(): Promise<void> {
    const nowMs = clock.now();
    const since = isoAt(polledMs - o.intervalMs);
    const rows = await db
      .selectFrom('hosts')
      .leftJoin('fleet_host_status', 'fleet_host_status.host_id', 'hosts.id')
      .select('hosts.id')
      .where('hosts.last_seen', '>=', since)
      .where('hosts.decommissioned_at', 'is', null)
      .where((eb) =>
        eb.or([eb('fleet_host_status.status', 'is', null), eb('fleet_host_status.status', '!=', 'online')]),
      )
      .execute();
    polledMs = nowMs;
    for (const r of rows) dirty.add(r.id);
  }

  function sweep(): void {
    if (!leader()) return;
    if (o.peers === true && !polling) {
      polling = true;
      poll()
        .then(kick, (err: unknown) => log.warn({ err }, 'reading heartbeats of other controllers failed'))
        .finally(() => (polling = false));
    }
    const nowMs = clock.now();
    for (const [id, seenMs] of beats) {
      const now = byAge(seenMs, nowMs);
      if (now === 'online') break;
      const prev = told.get(id) ?? 'online';
      if (DOWN_RANK[now] > DOWN_RANK[prev]) dirty.add(id);
    }
    kick();
  }

  /** Loads what was told and the heartbeats as stored, and queues the hosts to look at. */
  async function load(): Promise<void> {
    startMs = clock.now();
    polledMs = startMs;
    const rows = await db
      .selectFrom('hosts')
      .leftJoin('fleet_host_status', 'fleet_host_status.host_id', 'hosts.id')
      .select([
        'hosts.id',
        'hosts.name',
        'hosts.address',
        'hosts.enrolled_via',
        'hosts.last_seen',
        'hosts.decommissioned_at',
        'fleet_host_status.status',
      ])
      .where((eb) =>
        eb.or([
          eb('hosts.decommissioned_at', 'is', null),
          eb('fleet_host_status.status', 'is', null),
          eb('fleet_host_status.status', '!=', 'decommissioned'),
        ]),
      )
      .orderBy('hosts.last_seen')
      .execute();
    for (const row of rows) {
      const status = row.status !== null && STATUSES.has(row.status) ? (row.status as HostStatus) : undefined;
      if (status !== undefined) told.set(row.id, status);
      if (status === undefined || row.decommissioned_at !== null) dirty.add(row.id);
      else if (row.last_seen !== null && status !== 'offline')
        beats.set(row.id, Math.max(Date.parse(row.last_seen), startMs));
      // Told down but heartbeating through another controller: it may be back.
      if (o.peers === true && status !== 'online' && row.last_seen !== null) dirty.add(row.id);
    }
  }

  return {
    async start() {
      started = true;
      await load();
      await checks.coalesce('check', check);
      sweepTimer = setInterval(sweep, o.sweepEveryMs);
      sweepTimer.unref();
    },
    async takeOver() {
      if (!started || closed) return;
      // After the check in flight, so what it learnt does not outlive the reload.
      await checks.idle();
      told.clear();
      beats.clear();
      dirty.clear();
      // Checked by the first sweep once this controller leads (it does not yet, during the hook).
      await load();
    },
    seen(hostIds, nowMs) {
      if (closed || !leader()) return;
      let any = false;
      for (const id of hostIds) {
        beats.delete(id);
        beats.set(id, nowMs);
        if (told.get(id) !== 'online' || checking.has(id)) {
          dirty.add(id);
          any = true;
        }
      }
      if (any) kick();
    },
    revoked(hostId) {
      if (!leader()) return;
      dirty.add(hostId);
      kick();
    },
    enrolled(hostId) {
      if (!told.has(hostId)) told.set(hostId, 'pending');
    },
    async settle() {
      kick();
      await checks.idle();
    },
    async close() {
      closed = true;
      if (sweepTimer) clearInterval(sweepTimer);
      if (retryTimer) clearTimeout(retryTimer);
      await checks.idle();
    },
  };
}

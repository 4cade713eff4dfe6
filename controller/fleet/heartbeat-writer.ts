import { CompiledQuery, sql, type Insertable, type Kysely } from 'kysely';
import type { Logger } from 'pino';
import type { HeartbeatRequest, LifecycleEvent, ServiceStatus } from '../../protocol/heartbeat.js';
import { CorralError, ErrorCode } from '../../protocol/errors.js';
import { isoAt, type Clock } from '../clock.js';
import { dialectOf } from '../db/dialect-of.js';
import type { ControllerDatabase, ServiceObservedTable } from '../db/schema.js';
import { DEFAULT_EVENT_RETENTION, pruneHostEvents, type EventRetention } from './event-retention.js';

/**
 * How long the first heartbeat after a quiet spell waits for others to share its
 * transaction, in ms. Under load no timer is involved: whatever arrives while a batch is
 * being committed forms the next batch (group commit), so batches grow with the load and
 * latency stays about one commit.
 */
export const DEFAULT_HEARTBEAT_FLUSH_MS = 2;
/** Heartbeats written per transaction at most. */
export const DEFAULT_HEARTBEAT_BATCH = 2000;
/** Heartbeats waiting at most; beyond it they are refused (503) and counted. */
export const DEFAULT_HEARTBEAT_MAX_PENDING = 20_000;
const EVENT_ROWS_PER_INSERT = 100;
/** Hosts updated per statement (5 parameters each, well under SQLite's 32,766). */
const HOST_ROWS_PER_UPDATE = 1000;
/** Observed-service rows per upsert statement (11 parameters each). */
const SERVICE_ROWS_PER_UPSERT = 500;
/** Parameters of one DELETE of services no longer listed, at most (host ids and kept rows). */
const MAX_DELETE_PARAMS = 10_000;

interface Pending {
  readonly hostId: string;
  readonly heartbeat: HeartbeatRequest;
  resolve(acked: string[]): void;
  reject(e: unknown): void;
}

export interface HeartbeatWriterStats {
  readonly pending: number;
  readonly batches: number;
  readonly written: number;
  readonly refused: number;
}

export interface HeartbeatWriter {
  /**
   * Queues a heartbeat; resolves with the ids of the events it carried once they are durably
   * committed (so an acknowledged event is never lost). Rejects with CORRAL_ERR_UNAVAILABLE
   * when the queue is full or the write failed.
   */
  submit(hostId: string, heartbeat: HeartbeatRequest): Promise<string[]>;
  /** Forgets cached state of a host (after decommission, or another controller wrote its services). */
  forget(hostId: string): void;
  stats(): HeartbeatWriterStats;
  /** Writes what is queued, then refuses new heartbeats. Idempotent. */
  close(): Promise<void>;
}

/**
 * Told about each batch the writer commits (fleet events). `servicesChanging` runs inside the
 * batch's transaction, before the hosts' observed services are rewritten (a throw fails the
 * batch like any write); `committed` after the commit, with every host of the batch.
 */
export interface HeartbeatObserver {
  servicesChanging?(
    trx: Kysely<ControllerDatabase>,
    hosts: readonly { readonly hostId: string; readonly services: readonly ServiceStatus[] }[],
  ): Promise<void>;
  committed?(hostIds: readonly string[], nowMs: number): void;
}

export interface HeartbeatWriterOptions {
  readonly db: Kysely<ControllerDatabase>;
  readonly clock: Clock;
  readonly log: Logger;
  readonly flushMs?: number | undefined;
  readonly maxBatch?: number;
  readonly maxPending?: number;
  /** Events kept per host: each host that sent events is pruned in the same transaction. */
  readonly retention?: Pick<EventRetention, 'maxAgeMs' | 'maxPerHost'>;
  /** Told how many events retention deleted, once that is committed. */
  readonly onEventsPruned?: (count: number) => void;
  /**
   * Told the hosts whose observed services this writer wrote with nothing cached for them (the
   * first heartbeat it stored for each, since start or `forget`), once that is committed: with
   * other controllers on the database, they forget what they cached for those hosts, so a host
   * that comes back to them after writing here has its services written again.
   */
  readonly onFirstWrite?: (hostIds: readonly string[]) => void;
  readonly observer?: HeartbeatObserver;
}

/**
 * Coalesces heartbeat writes into few transactions (host rows in one statement, observed
 * services when they changed, new events), single-flight with group commit. This keeps a
 * transaction and an fsync per heartbeat off the request path.
 */
export function createHeartbeatWriter(options: HeartbeatWriterOptions): HeartbeatWriter {
  const { db, clock, log } = options;
  const flushMs = options.flushMs ?? DEFAULT_HEARTBEAT_FLUSH_MS;
  const maxBatch = options.maxBatch ?? DEFAULT_HEARTBEAT_BATCH;
  const maxPending = options.maxPending ?? DEFAULT_HEARTBEAT_MAX_PENDING;
  const retention = options.retention ?? DEFAULT_EVENT_RETENTION;
  let queue: Pending[] = [];
  let timer: NodeJS.Timeout | undefined;
  let flushing: Promise<void> | undefined;
  let closed = false;
  let batches = 0;
  let written = 0;
  let refused = 0;
  /** Last services written per host: an unchanged list is not rewritten. */
  const servicesWritten = new Map<string, readonly ServiceStatus[]>();

  function schedule(): void {
    if (flushing || timer) return;
    if (queue.length >= maxBatch) {
      flushing = runFlush();
      return;
    }
    timer = setTimeout(() => {
      timer = undefined;
      flushing = runFlush();
    }, flushMs);
  }

  async function runFlush(): Promise<void> {
    try {
      while (queue.length > 0) {
        const batch = queue.slice(0, maxBatch);
        queue = queue.slice(batch.length);
        await writeBatch(batch);
      }
    } finally {
      flushing = undefined;
      if (queue.length > 0) schedule();
    }
  }

  async function writeBatch(batch: Pending[]): Promise<void> {
    const latest = new Map<string, Pending>();
    for (const p of batch) latest.set(p.hostId, p);
    const servicesToWrite = new Map<string, readonly ServiceStatus[]>();
    // One timestamp per batch: last seen is when the heartbeat was stored (milliseconds late).
    const nowMs = clock.now();
    const nowIso = isoAt(nowMs);
    let pruned = 0;
    try {
      await db.transaction().execute(async (trx) => {
        const hosts = [...latest.values()];
        for (let i = 0; i < hosts.length; i += HOST_ROWS_PER_UPDATE) {
          await updateHosts(trx, hosts.slice(i, i + HOST_ROWS_PER_UPDATE), nowIso);
        }
        const changed = hosts.filter(
          (p) => !sameServices(servicesWritten.get(p.hostId), p.heartbeat.services),
        );
        await options.observer?.servicesChanging?.(
          trx,
          changed.map((p) => ({ hostId: p.hostId, services: p.heartbeat.services })),
        );
        await writeServices(trx, changed, nowIso);
        for (const p of changed) servicesToWrite.set(p.hostId, p.heartbeat.services);
        const events = batch.flatMap((p) => p.heartbeat.events.map((e) => eventRow(p.hostId, e, nowIso)));
        for (let i = 0; i < events.length; i += EVENT_ROWS_PER_INSERT) {
          await trx
            .insertInto('events')
            .values(events.slice(i, i + EVENT_ROWS_PER_INSERT))
            .onConflict((oc) => oc.columns(['host_id', 'event_id']).doNothing())
            .execute();
        }
        // The count limit holds at every commit, however fast a host sends events.
        const sentEvents = new Set(batch.filter((p) => p.heartbeat.events.length > 0).map((p) => p.hostId));
        for (const hostId of sentEvents) pruned += await pruneHostEvents(trx, hostId, retention, nowMs);
      });
    } catch (e: unknown) {
      if (batch.length > 1) {
        // Isolate whatever broke the batch: each heartbeat alone, so the others still land.
        log.warn({ err: e, heartbeats: batch.length }, 'heartbeat batch failed; writing one by one');
        for (const p of batch) await writeBatch([p]);
        return;
      }
      log.error({ err: e, hostId: batch[0]?.hostId }, 'heartbeat could not be stored');
      const err = new CorralError(ErrorCode.UNAVAILABLE, 'heartbeat could not be stored; retry');
      for (const p of batch) p.reject(err);
      return;
    }
    const first = options.onFirstWrite && [...servicesToWrite.keys()].filter((h) => !servicesWritten.has(h));
    for (const [hostId, services] of servicesToWrite) servicesWritten.set(hostId, services);
    if (first && first.length > 0) options.onFirstWrite?.(first);
    if (pruned > 0) options.onEventsPruned?.(pruned);
    options.observer?.committed?.([...latest.keys()], nowMs);
    batches++;
    written += batch.length;
    for (const p of batch) p.resolve(p.heartbeat.events.map((e) => e.id));
  }

  return {
    submit(hostId, heartbeat) {
      if (closed)
        return Promise.reject(new CorralError(ErrorCode.UNAVAILABLE, 'controller is shutting down'));
      if (queue.length >= maxPending) {
        refused++;
        return Promise.reject(
          new CorralError(ErrorCode.UNAVAILABLE, 'controller is overloaded; retry later'),
        );
      }
      return new Promise<string[]>((resolve, reject) => {
        queue.push({ hostId, heartbeat, resolve, reject });
        schedule();
      });
    },
    forget(hostId) {
      servicesWritten.delete(hostId);
    },
    stats() {
      return { pending: queue.length, batches, written, refused };
    },
    async close() {
      closed = true;
      if (timer) {
        clearTimeout(timer);
        timer = undefined;
      }
      while (flushing || queue.length > 0) {
        if (!flushing) flushing = runFlush();
        await flushing;
      }
    },
  };
}

/**
 * One statement for many hosts: `UPDATE … FROM (VALUES …)`, which SQLite (3.33+) and
 * PostgreSQL both run; VALUES columns are named column1…columnN on both.
 */
async function updateHosts(
  trx: Kysely<ControllerDatabase>,
  rows: readonly Pending[],
  nowIso: string,
): Promise<void> {
  const params: unknown[] = [];
  for (const p of rows) {
    const hb = p.heartbeat;
    params.push(p.hostId, nowIso, hb.agentVersion, hb.generation, JSON.stringify(hb.metrics));
  }
  await trx.executeQuery(CompiledQuery.raw(updateHostsSql(trx, rows.length), params));
}

/** Statement texts by row count, per database (its dialect compiled them). */
const updateSqlByDb = new WeakMap<object, Map<number, string>>();

/**
 * The statement text for `rows` hosts, compiled by the dialect (so placeholders are its
 * own) once per size and database and reused: the heartbeat path builds no query tree.
 * PostgreSQL types a VALUES list from its parameters, which arrive untyped, so there each
 * one is cast to its column's type.
 */
function updateHostsSql(db: Kysely<ControllerDatabase>, rows: number): string {
  const adapter = db.getExecutor().adapter;
  let byRows = updateSqlByDb.get(adapter);
  if (byRows === undefined) {
    byRows = new Map();
    updateSqlByDb.set(adapter, byRows);
  }
  let text = byRows.get(rows);
  if (text === undefined) {
    const row =
      dialectOf(db) === 'postgres'
        ? () => sql`(${''}::text, ${''}::text, ${''}::text, ${0}::bigint, ${''}::text)`
        : () => sql`(${''}, ${''}, ${''}, ${0}, ${''})`;
    const values = sql.join(Array.from({ length: rows }, row));
    text =
      sql`UPDATE hosts SET last_seen = v.column2, agent_version = v.column3, generation = v.column4, metrics = v.column5
      FROM (VALUES ${values}) AS v WHERE hosts.id = v.column1 AND hosts.decommissioned_at IS NULL`.compile(
        db,
      ).sql;
    if (byRows.size < HOST_ROWS_PER_UPDATE) byRows.set(rows, text);
  }
  return text;
}

/** Field-by-field equality of two observed-service lists (order matters: the agent keeps it stable). */
function sameServices(a: readonly ServiceStatus[] | undefined, b: readonly ServiceStatus[]): boolean {
  if (a === undefined || a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) {
    const x = a[i];
    const y = b[i];
    if (
      x === undefined ||
      y === undefined ||
      x.name !== y.name ||
      x.state !== y.state ||
      x.restarts !== y.restarts ||
      x.lastError !== y.lastError ||
      x.pid !== y.pid ||
      x.since !== y.since ||
      x.runtime !== y.runtime ||
      x.image !== y.image ||
      x.containerId !== y.containerId
    ) {
      return false;
    }
  }
  return true;
}

function eventRow(hostId: string, e: LifecycleEvent, nowIso: string) {
  return {
    host_id: hostId,
    event_id: e.id,
    type: e.type,
    time: e.time,
    service: e.service ?? null,
    generation: e.generation ?? null,
    operation_id: e.operationId ?? null,
    detail: e.detail ?? null,
    received_at: nowIso,
  };
}

/**
 * The observed services of `hosts` (each at most once) become exactly their heartbeats'
 * lists, in a few statements for the whole batch: one DELETE of rows no longer listed per
 * MAX_DELETE_PARAMS, one multi-row upsert per SERVICE_ROWS_PER_UPSERT. A restart makes every
 * host's first heartbeat write its services, so this is the connect storm's cost.
 */
async function writeServices(
  trx: Kysely<ControllerDatabase>,
  hosts: readonly Pending[],
  nowIso: string,
): Promise<void> {
  if (hosts.length === 0) return;
  // host_id and service are [a-z0-9-] (schema-checked), so "host/service" names one row.
  const rowKey = sql<string>`${sql.ref('host_id')} || '/' || ${sql.ref('service')}`;
  let ids: string[] = [];
  let keep: string[] = [];
  const deleteGone = async (): Promise<void> => {
    if (ids.length === 0) return;
    let gone = trx.deleteFrom('service_observed').where('host_id', 'in', ids);
    if (keep.length > 0) gone = gone.where(rowKey, 'not in', keep);
    await gone.execute();
    ids = [];
    keep = [];
  };
  // Last one wins when a list names a service twice (as one upsert per row did).
  const rows = new Map<string, Insertable<ServiceObservedTable>>();
  for (const p of hosts) {
    const names = [...new Set(p.heartbeat.services.map((s) => s.name))];
    if (ids.length > 0 && ids.length + keep.length + 1 + names.length > MAX_DELETE_PARAMS) await deleteGone();
    ids.push(p.hostId);
    for (const name of names) keep.push(`${p.hostId}/${name}`);
    for (const s of p.heartbeat.services) {
      rows.set(`${p.hostId}/${s.name}`, {
        host_id: p.hostId,
        service: s.name,
        state: s.state,
        restarts: s.restarts,
        last_error: s.lastError,
        pid: s.pid,
        since: s.since,
        updated_at: nowIso,
        runtime: s.runtime ?? null,
        image: s.image ?? null,
        container_id: s.containerId ?? null,
      });
    }
  }
  await deleteGone();
  const all = [...rows.values()];
  for (let i = 0; i < all.length; i += SERVICE_ROWS_PER_UPSERT) {
    await trx
      .insertInto('service_observed')
      .values(all.slice(i, i + SERVICE_ROWS_PER_UPSERT))
      .onConflict((oc) =>
        oc.columns(['host_id', 'service']).doUpdateSet((eb) => ({
          state: eb.ref('excluded.state'),
          restarts: eb.ref('excluded.restarts'),
          last_error: eb.ref('excluded.last_error'),
          pid: eb.ref('excluded.pid'),
          since: eb.ref('excluded.since'),
          updated_at: eb.ref('excluded.updated_at'),
          runtime: eb.ref('excluded.runtime'),
          image: eb.ref('excluded.image'),
          container_id: eb.ref('excluded.container_id'),
        })),
      )
      .execute();
  }
}

import { sql, type Kysely } from 'kysely';
import type { Logger } from 'pino';
import { SingleFlight } from '../../kit/single-flight.js';
import { isoAt, type Clock } from '../clock.js';
import type { ControllerDatabase } from '../db/schema.js';

type Db = Kysely<ControllerDatabase>;

/**
 * How long and how many fleet events the controller keeps, and how much of each webhook's
 * delivery log. Age counts from when the controller wrote the event. Deliveries still
 * pending are never pruned (they end by being delivered or given up on).
 */
export interface FleetEventRetention {
  /** Events (and finished deliveries) older than this are deleted, in ms. */
  readonly maxAgeMs: number;
  /** At most this many events: the newest are kept. */
  readonly maxCount: number;
  /** Finished deliveries kept per webhook: the newest. */
  readonly deliveriesPerWebhook: number;
  /** How often retention runs (it also runs once at start), in ms. */
  readonly pruneEveryMs: number;
}

export const DEFAULT_FLEET_EVENT_RETENTION: FleetEventRetention = {
  maxAgeMs: 30 * 86_400_000,
  maxCount: 100_000,
  deliveriesPerWebhook: 1000,
  pruneEveryMs: 3_600_000,
};

/** Checks the limits; throws a RangeError naming the one that cannot work. */
export function checkFleetEventRetention(r: FleetEventRetention): void {
  if (!(r.maxAgeMs > 0 && Number.isFinite(r.maxAgeMs)))
    throw new RangeError('fleet event max age must be positive');
  if (!(Number.isSafeInteger(r.maxCount) && r.maxCount >= 1))
    throw new RangeError('fleet events kept must be a whole number of at least 1');
  if (!(Number.isSafeInteger(r.deliveriesPerWebhook) && r.deliveriesPerWebhook >= 1))
    throw new RangeError('deliveries kept per webhook must be a whole number of at least 1');
  if (!(r.pruneEveryMs > 0 && Number.isFinite(r.pruneEveryMs)))
    throw new RangeError('fleet event prune interval must be positive');
}

/**
 * Deletes events older than the age limit and beyond the newest `maxCount`. Both delete a
 * prefix in cursor order (everything up to the newest event that is too old, everything
 * before the oldest one kept), so the cursors left are always contiguous: a reader can tell
 * that it missed events by a gap after its cursor. Returns how many went.
 */
export async function pruneFleetEvents(db: Db, r: FleetEventRetention, nowMs: number): Promise<number> {
  const tooOld = await db
    .selectFrom('fleet_events')
    .select((eb) => eb.fn.max('cursor').as('cursor'))
    .where('time', '<', isoAt(nowMs - r.maxAgeMs))
    .executeTakeFirst();
  let deleted = 0n;
  if (tooOld?.cursor !== null && tooOld?.cursor !== undefined) {
    const res = await db.deleteFrom('fleet_events').where('cursor', '<=', tooOld.cursor).executeTakeFirst();
    deleted += res.numDeletedRows;
  }
  const oldestKept = await db
    .selectFrom('fleet_events')
    .select('cursor')
    .orderBy('cursor', 'desc')
    .limit(1)
    .offset(r.maxCount - 1)
    .executeTakeFirst();
  if (oldestKept) {
    const res = await db
      .deleteFrom('fleet_events')
      .where('cursor', '<', oldestKept.cursor)
      .executeTakeFirst();
    deleted += res.numDeletedRows;
  }
  return Number(deleted);
}

/** Deletes finished deliveries older than the age limit and beyond the newest per webhook. */
export async function pruneDeliveries(db: Db, r: FleetEventRetention, nowMs: number): Promise<number> {
  const aged = await db
    .deleteFrom('webhook_deliveries')
    .where('state', '!=', 'pending')
    .where('created_at', '<', isoAt(nowMs - r.maxAgeMs))
    .executeTakeFirst();
  let deleted = aged.numDeletedRows;
  const hooks = await db.selectFrom('webhooks').select('name').execute();
  for (const { name } of hooks) {
    for (const state of ['delivered', 'failed'] as const) {
      const oldestKept = await db
        .selectFrom('webhook_deliveries')
        .select('id')
        .where('webhook', '=', name)
        .where('state', '=', state)
        .orderBy('id', 'desc')
        .limit(1)
        .offset(r.deliveriesPerWebhook - 1)
        .executeTakeFirst();
      if (!oldestKept) continue;
      const res = await db
        .deleteFrom('webhook_deliveries')
        .where('webhook', '=', name)
        .where('state', '=', state)
        .where('id', '<', oldestKept.id)
        .executeTakeFirst();
      deleted += res.numDeletedRows;
    }
  }
  // Deliveries of webhooks removed while one of their attempts was in flight.
  const orphans = await db
    .deleteFrom('webhook_deliveries')
    .where(sql<boolean>`webhook NOT IN (SELECT name FROM webhooks)`)
    .executeTakeFirst();
  return Number(deleted + orphans.numDeletedRows);
}

export interface FleetPruner {
  /** Runs retention now (or joins the run in progress); resolves with the events deleted. */
  runNow(): Promise<number>;
  close(): Promise<void>;
}

/**
 * Runs retention at start, every `pruneEveryMs`, and when asked (the log asks once a tenth of
 * `maxCount` has been appended since the last run, so the count holds between runs). A
 * failed run is logged and retried at the next tick.
 */
export function startFleetPruner(o: {
  readonly db: Db;
  readonly clock: Clock;
  readonly retention: FleetEventRetention;
  readonly log: Logger;
  readonly onPruned?: (events: number, deliveries: number) => void;
  /** Timer runs happen only while this says so (the leader of several controllers); default always. */
  readonly leader?: () => boolean;
}): FleetPruner {
  const runs = new SingleFlight({ name: 'fleet event pruning', maxQueued: 1 });
  let closed = false;
  const run = (): Promise<number> =>
    runs.share('prune', async () => {
      const nowMs = o.clock.now();
      const events = await pruneFleetEvents(o.db, o.retention, nowMs);
      const deliveries = await pruneDeliveries(o.db, o.retention, nowMs);
      if (events > 0 || deliveries > 0) {
        o.log.info({ events, deliveries }, 'old fleet events and deliveries pruned');
        o.onPruned?.(events, deliveries);
      }
      return events;
    });
  const tick = (): void => {
    if (closed || (o.leader && !o.leader())) return;
    run().catch((err: unknown) => o.log.warn({ err }, 'pruning fleet events failed; will retry'));
  };
  const timer = setInterval(tick, o.retention.pruneEveryMs);
  timer.unref();
  tick();
  return {
    runNow: run,
    async close() {
      closed = true;
      clearInterval(timer);
      await runs.idle();
    },
  };
}

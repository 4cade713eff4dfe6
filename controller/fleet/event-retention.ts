import type { Kysely } from 'kysely';
import type { Logger } from 'pino';
import { isoAt, type Clock } from '../clock.js';
import type { ControllerDatabase } from '../db/schema.js';
import { SingleFlight } from '../../kit/single-flight.js';

/**
 * How long and how many lifecycle events the controller keeps per host. Age is measured from
 * when the controller received an event (`received_at`), never from the time the worker put in
 * it, so a worker cannot date its events into the future to keep them.
 */
export interface EventRetention {
  /** Events received longer ago than this are deleted, in ms. */
  readonly maxAgeMs: number;
  /** At most this many events per host: the newest are kept. */
  readonly maxPerHost: number;
  /** How often every host's events are pruned by age (hosts that no longer beat too), in ms. */
  readonly pruneEveryMs: number;
}

export const DEFAULT_EVENT_RETENTION: EventRetention = {
  maxAgeMs: 30 * 86_400_000,
  maxPerHost: 1000,
  pruneEveryMs: 3_600_000,
};

type Db = Kysely<ControllerDatabase>;

/** Checks the limits; throws a RangeError naming the one that cannot work. */
export function checkEventRetention(r: EventRetention): void {
  if (!(r.maxAgeMs > 0 && Number.isFinite(r.maxAgeMs)))
    throw new RangeError('event max age must be positive');
  if (!(Number.isSafeInteger(r.maxPerHost) && r.maxPerHost >= 1))
    throw new RangeError('events kept per host must be a whole number of at least 1');
  if (!(r.pruneEveryMs > 0 && Number.isFinite(r.pruneEveryMs)))
    throw new RangeError('event prune interval must be positive');
}

/**
 * Deletes one host's events older than the age limit and beyond the newest `maxPerHost`
 * (ordered by `received_at`, then event id). Runs in the caller's transaction when given one.
 * Uses the `events_host_received` index; portable SQL (no rowid).
 */
export async function pruneHostEvents(
  db: Db,
  hostId: string,
  retention: Pick<EventRetention, 'maxAgeMs' | 'maxPerHost'>,
  nowMs: number,
): Promise<number> {
  const aged = await db
    .deleteFrom('events')
    .where('host_id', '=', hostId)
    .where('received_at', '<', isoAt(nowMs - retention.maxAgeMs))
    .executeTakeFirst();
  const oldestKept = await db
    .selectFrom('events')
    .select(['received_at', 'event_id'])
    .where('host_id', '=', hostId)
    .orderBy('received_at', 'desc')
    .orderBy('event_id', 'desc')
    .limit(1)
    .offset(retention.maxPerHost - 1)
    .executeTakeFirst();
  let over = 0n;
  if (oldestKept) {
    const res = await db
      .deleteFrom('events')
      .where('host_id', '=', hostId)
      .where((eb) =>
        eb.or([
          eb('received_at', '<', oldestKept.received_at),
          eb.and([eb('received_at', '=', oldestKept.received_at), eb('event_id', '<', oldestKept.event_id)]),
        ]),
      )
      .executeTakeFirst();
    over = res.numDeletedRows;
  }
  return Number(aged.numDeletedRows + over);
}

/** Events deleted per statement when pruning by age (each statement a short write). */
const AGED_EVENTS_PER_DELETE = 2_000;

/**
 * Prunes every host's events: those past the age limit a batch per statement, oldest first
 * (from the `events_received` index), then the hosts holding more than `maxPerHost` (found in
 * one pass over `events_host_received`) one at a time. A handful of statements for a fleet
 * of 60k hosts, none holding the write lock for long.
 */
export async function pruneAllEvents(db: Db, retention: EventRetention, nowMs: number): Promise<number> {
  const cutoff = isoAt(nowMs - retention.maxAgeMs);
  let deleted = 0;
  // Ends: every round but the last deletes a full batch of a table that only shrinks here.
  for (;;) {
    const res = await db
      .deleteFrom('events')
      .where((eb) =>
        eb(
          eb.refTuple('host_id', 'event_id'),
          'in',
          eb
            .selectFrom('events')
            .select(['host_id', 'event_id'])
            .where('received_at', '<', cutoff)
            .orderBy('received_at')
            .limit(AGED_EVENTS_PER_DELETE)
            .$asTuple('host_id', 'event_id'),
        ),
      )
      .executeTakeFirst();
    const n = Number(res.numDeletedRows);
    deleted += n;
    if (n < AGED_EVENTS_PER_DELETE) break;
  }
  const crowded = await db
    .selectFrom('events')
    .select('host_id')
    .groupBy('host_id')
    .having((eb) => eb.fn.countAll(), '>', retention.maxPerHost)
    .execute();
  for (const { host_id } of crowded) deleted += await pruneHostEvents(db, host_id, retention, nowMs);
  return deleted;
}

export interface EventPruner {
  /** Prunes every host now; resolves with how many events went. */
  runNow(): Promise<number>;
  /** Stops the timer and waits for a run in progress. Idempotent. */
  close(): Promise<void>;
}

/**
 * Prunes every host's events at start and then every `pruneEveryMs` (the heartbeat writer
 * prunes a host each time it stores events for it; this catches hosts that went quiet).
 * A failed run is logged and retried at the next tick.
 */
export function startEventPruner(o: {
  readonly db: Db;
  readonly clock: Clock;
  readonly retention: EventRetention;
  readonly log: Logger;
  /** Told how many events each run deleted. */
  readonly onPruned?: (count: number) => void;
  /** Timer runs happen only while this says so (the leader of several controllers); default always. */
  readonly leader?: () => boolean;
}): EventPruner {
  // A run asked for while one is in flight is that run (runNow and the timer never pile up).
  const runs = new SingleFlight({ name: 'event pruning', maxQueued: 1 });
  let closed = false;
  const run = (): Promise<number> =>
    runs.share('prune', async () => {
      const deleted = await pruneAllEvents(o.db, o.retention, o.clock.now());
      if (deleted > 0) {
        o.log.info({ deleted }, 'old lifecycle events pruned');
        o.onPruned?.(deleted);
      }
      return deleted;
    });
  const tick = (): void => {
    if (closed || (o.leader && !o.leader())) return;
    run().catch((err: unknown) => o.log.warn({ err }, 'pruning lifecycle events failed; will retry'));
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

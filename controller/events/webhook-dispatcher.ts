import { setMaxListeners } from 'node:events';
import type { Kysely } from 'kysely';
import type { Logger } from 'pino';
import { Agent, request } from 'undici';
import { WEBHOOK_HEADERS } from '../../protocol/admin-notify.js';
import { CorralError, ErrorCode, isCorralError } from '../../protocol/errors.js';
import { backoffDelayMs } from '../../kit/backoff.js';
import { isoAt, type Clock } from '../clock.js';
import type { ControllerDatabase } from '../db/schema.js';
import { describeCallError } from '../fleet/call-errors.js';
import { cutText, readEvents } from './event-log.js';
import type { HeadWatcher } from './head-watcher.js';
import { signDelivery } from './webhook-signature.js';
import { wants, type Webhook } from './webhook-store.js';
import { urlOrigin } from './webhook-target.js';

type Db = Kysely<ControllerDatabase>;

/** How deliveries are attempted and retried. */
export interface WebhookDeliverySettings {
  /** First retry's backoff ceiling (full jitter, doubling), in ms. */
  readonly baseMs: number;
  /** Largest backoff between attempts, in ms. */
  readonly capMs: number;
  /** A delivery not accepted this long after its event is given up (`failed`), in ms. */
  readonly giveUpAfterMs: number;
  /** One attempt (connect to the end of the answer), in ms. */
  readonly timeoutMs: number;
  /** Attempts in flight at once, over all webhooks. */
  readonly concurrency: number;
  /** Pending deliveries one webhook may have; events past it are dropped for it, and counted. */
  readonly maxPendingPerWebhook: number;
}

export const DEFAULT_WEBHOOK_DELIVERY: WebhookDeliverySettings = {
  baseMs: 1_000,
  capMs: 10 * 60_000,
  giveUpAfterMs: 24 * 3_600_000,
  timeoutMs: 10_000,
  concurrency: 8,
  maxPendingPerWebhook: 10_000,
};

/** Events read per fan-out step. */
const FANOUT_PAGE = 500;
/** Deliveries inserted per statement (9 parameters each). */
const DELIVERIES_PER_INSERT = 100;
/** Attempts in flight for one webhook at most, so a slow receiver cannot take every slot. */
const PER_WEBHOOK_IN_FLIGHT = 2;
/** The loop looks again at least this often when nothing wakes it, in ms. */
const IDLE_WAIT_MS = 5_000;
/** After a failed pass (database error) the loop waits this long, in ms. */
const ERROR_WAIT_MS = 1_000;
/** Answer bodies are read (and thrown away) up to this many bytes. */
const MAX_ANSWER_BYTES = 64 * 1024;
/** Pending counts for /metrics are refreshed at most this often, in ms. */
const COUNTS_EVERY_MS = 1_000;

type Result = 'delivered' | 'retry' | 'failed' | 'dropped';
const RESULTS: readonly Result[] = ['delivered', 'retry', 'failed', 'dropped'];
/** The message of the conflict a fan-out meets when its webhook's cursor moved (removed, re-added). */
const MOVED_ON = 'webhook changed during fan-out';

interface Due {
  readonly id: number;
  readonly webhook: string;
  readonly event_id: string;
  readonly kind: string;
  readonly body: string;
  readonly attempts: number;
  readonly created_at: string;
}

export interface WebhookDispatcher {
  start(): void;
  /** Webhooks were added or removed: reload them and look at once. */
  reload(): void;
  /** Prometheus lines: attempts by webhook and result, pending deliveries by webhook. */
  metricsLines(): string[];
  /** Stops the loop and aborts attempts in flight (their deliveries stay pending). Idempotent. */
  close(): Promise<void>;
}

const escapeLabel = (v: string): string =>
  v.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n');

/**
 * Delivers fleet events to webhooks at least once, from an outbox in the database. A loop
 * turns each new event into one delivery per webhook that wants it (and moves that webhook's
 * cursor in the same transaction, so after a restart it goes on where it stopped), then POSTs
 * the deliveries that are due. A 2xx answer marks a delivery delivered; anything else (no
 * answer, a timeout, a 3xx, 4xx or 5xx) schedules the next attempt after a capped backoff with
 * full jitter, until `giveUpAfterMs` after the delivery was made, when it is `failed`. A
 * controller that dies mid-attempt sends that delivery again: receivers dedupe on the event id.
 */
export function createWebhookDispatcher(o: {
  readonly db: Db;
  readonly readDb: Db;
  readonly clock: Clock;
  readonly log: Logger;
  readonly head: HeadWatcher;
  /** Every webhook, secrets included (WebhookStore.all). */
  readonly loadWebhooks: () => Promise<Webhook[]>;
  readonly settings: WebhookDeliverySettings;
  /** Randomness of the backoff (tests may fix it). */
  readonly random?: () => number;
  /** Deliveries happen only while this says so (the leader of several controllers); default always. */
  readonly leader?: () => boolean;
}): WebhookDispatcher {
  const { db, readDb, clock, log, settings } = o;
  const agent = new Agent({
    connections: 4,
    keepAliveTimeout: 10_000,
    connect: { timeout: settings.timeoutMs },
  });
  const abort = new AbortController();
  // Every attempt in flight and the loop's wait listen on it.
  setMaxListeners(settings.concurrency * 2 + 8, abort.signal);
  const inFlight = new Set<number>();
  const inFlightBy = new Map<string, number>();
  const results = new Map<string, Record<Result, number>>();
  let pendingBy = new Map<string, number>();
  let countsAt = 0;
  let hooks: Webhook[] = [];
  let stale = true;
  const running = new Set<Promise<void>>();
  let wake: (() => void) | undefined;
  /** Set by kick(); a pass clears it first, so a kick during a pass is never lost. */
  let kicked = false;
  let loop: Promise<void> | undefined;
  let closing: Promise<void> | undefined;

  const kick = (): void => {
    kicked = true;
    wake?.();
  };

  function count(webhook: string, result: Result, n = 1): void {
    let r = results.get(webhook);
    if (!r) results.set(webhook, (r = { delivered: 0, retry: 0, failed: 0, dropped: 0 }));
    r[result] += n;
  }

  async function fanOut(): Promise<void> {
    for (const hook of hooks) {
      let cursor = hook.cursor;
      for (;;) {
        const events = await readEvents(readDb, cursor, FANOUT_PAGE);
        const last = events.at(-1);
        if (!last) break;
        const nowIso = isoAt(clock.now());
        const wanted = events.filter((e) => wants(hook.filters, e.kind));
        const moved = await db
          .transaction()
          .execute(async (trx) => {
            const pending = await trx
              .selectFrom('webhook_deliveries')
              .select((eb) => eb.fn.countAll<number>().as('n'))
              .where('webhook', '=', hook.name)
              .where('state', '=', 'pending')
              .executeTakeFirstOrThrow();
            const room = Math.max(0, settings.maxPendingPerWebhook - Number(pending.n));
            const kept = wanted.slice(0, room);
            if (wanted.length > kept.length) {
              count(hook.name, 'dropped', wanted.length - kept.length);
              log.warn(
                { webhook: hook.name, dropped: wanted.length - kept.length },
                'webhook outbox full; events dropped for it',
              );
            }
            const rows = kept.map((e) => ({
              webhook: hook.name,
              event_cursor: e.cursor,
              event_id: e.id,
              kind: e.kind,
              body: JSON.stringify(e),
              state: 'pending',
              attempts: 0,
              created_at: nowIso,
              next_attempt_at: nowIso,
            }));
            for (let i = 0; i < rows.length; i += DELIVERIES_PER_INSERT) {
              await trx
                .insertInto('webhook_deliveries')
                .values(rows.slice(i, i + DELIVERIES_PER_INSERT))
                .execute();
            }
            const res = await trx
              .updateTable('webhooks')
              .set({ cursor: last.cursor })
              .where('name', '=', hook.name)
              .where('cursor', '=', cursor)
              .executeTakeFirst();
            if (res.numUpdatedRows !== 1n) {
              // Removed (or re-added) meanwhile: undo, reload, and start over for it.
              throw new CorralError(ErrorCode.CONFLICT, MOVED_ON);
            }
            return true;
          })
          .catch((e: unknown) => {
            if (isCorralError(e, ErrorCode.CONFLICT) && e.message === MOVED_ON) {
              stale = true;
              return false;
            }
            throw e;
          });
        if (!moved) return;
        cursor = last.cursor;
        (hook as { cursor: number }).cursor = cursor;
        if (events.length < FANOUT_PAGE) break;
      }
    }
  }

  /**
   * Starts the attempts that are due, up to the limits. Returns how long the loop may wait:
   * until the next delivery is due, or (when due ones wait for a free slot, or none is
   * pending) IDLE_WAIT_MS, since an attempt that ends wakes the loop anyway.
   */
  async function deliverDue(): Promise<number> {
    const nowMs = clock.now();
    const room = settings.concurrency - inFlight.size;
    if (room <= 0) return IDLE_WAIT_MS;
    const due: Due[] = await readDb
      .selectFrom('webhook_deliveries')
      .select(['id', 'webhook', 'event_id', 'kind', 'body', 'attempts', 'created_at'])
      .where('state', '=', 'pending')
      .where('next_attempt_at', '<=', isoAt(nowMs))
      .orderBy('next_attempt_at')
      .orderBy('id')
      .limit(settings.concurrency * 4)
      .execute();
    let started = 0;
    let waiting = false;
    for (const d of due) {
      if (inFlight.has(d.id)) continue;
      if (started >= room || (inFlightBy.get(d.webhook) ?? 0) >= PER_WEBHOOK_IN_FLIGHT) {
        waiting = true;
        continue;
      }
      const hook = hooks.find((h) => h.name === d.webhook);
      if (!hook) continue;
      started++;
      inFlight.add(d.id);
      inFlightBy.set(d.webhook, (inFlightBy.get(d.webhook) ?? 0) + 1);
      const one = attempt(hook, d).finally(() => {
        inFlight.delete(d.id);
        inFlightBy.set(d.webhook, (inFlightBy.get(d.webhook) ?? 1) - 1);
        running.delete(one);
        kick();
      });
      running.add(one);
    }
    if (waiting || due.length === settings.concurrency * 4) return IDLE_WAIT_MS;
    const next = await readDb
      .selectFrom('webhook_deliveries')
      .select((eb) => eb.fn.min('next_attempt_at').as('at'))
      .where('state', '=', 'pending')
      .where('next_attempt_at', '>', isoAt(nowMs))
      .executeTakeFirst();
    return typeof next?.at === 'string' ? Math.max(1, Date.parse(next.at) - nowMs) : IDLE_WAIT_MS;
  }

  async function attempt(hook: Webhook, d: Due): Promise<void> {
    const timestamp = Math.floor(clock.now() / 1000);
    let status: number | null = null;
    let error: string | null = null;
    try {
      const res = await request(hook.url, {
        method: 'POST',
        dispatcher: agent,
        headers: {
          'content-type': 'application/json',
          'user-agent': 'corral-webhook/1',
          [WEBHOOK_HEADERS.eventId]: d.event_id,
          [WEBHOOK_HEADERS.eventKind]: d.kind,
          [WEBHOOK_HEADERS.timestamp]: String(timestamp),
          [WEBHOOK_HEADERS.signature]: signDelivery(hook.secret, timestamp, d.body),
          [WEBHOOK_HEADERS.webhook]: hook.name,
        },
        body: d.body,
        signal: AbortSignal.any([abort.signal, AbortSignal.timeout(settings.timeoutMs)]),
        headersTimeout: settings.timeoutMs,
        bodyTimeout: settings.timeoutMs,
      });
      status = res.statusCode;
      await res.body
        .dump({ limit: MAX_ANSWER_BYTES })
        .catch(() => undefined /* the answer's body is not needed */);
      if (status < 200 || status > 299) error = `answered ${status}`;
    } catch (e: unknown) {
      if (abort.signal.aborted) return; // shutting down: the delivery stays pending
      const failure = describeCallError(e);
      error = cutText(`${failure.code}: ${failure.message}`, 500);
    }
    const nowMs = clock.now();
    const nowIso = isoAt(nowMs);
    const tries = d.attempts + 1;
    let result: Result;
    let next: string | null = null;
    if (error === null) {
      result = 'delivered';
    } else {
      const deadline = Date.parse(d.created_at) + settings.giveUpAfterMs;
      if (nowMs >= deadline) {
        result = 'failed';
      } else {
        result = 'retry';
        const floor = Math.min(settings.baseMs, 1_000);
        const delay = Math.max(floor, backoffDelayMs(tries - 1, settings.baseMs, settings.capMs, o.random));
        next = isoAt(Math.min(nowMs + delay, deadline));
      }
    }
    try {
      await db
        .updateTable('webhook_deliveries')
        .set({
          state: result === 'retry' ? 'pending' : result,
          attempts: tries,
          last_attempt_at: nowIso,
          last_status: status,
          last_error: error,
          next_attempt_at: next,
          ...(result === 'delivered' && { delivered_at: nowIso }),
        })
        .where('id', '=', d.id)
        .where('state', '=', 'pending')
        .execute();
    } catch (err: unknown) {
      // The attempt is not recorded: the delivery stays due and is sent again (at least once).
      log.warn({ err, webhook: hook.name, delivery: d.id }, 'webhook delivery outcome not recorded');
      return;
    }
    count(hook.name, result);
    if (result === 'failed') {
      log.warn(
        { webhook: hook.name, origin: urlOrigin(hook.url), eventId: d.event_id, attempts: tries, error },
        'webhook delivery given up',
      );
    } else if (result === 'retry') {
      log.info(
        { webhook: hook.name, origin: urlOrigin(hook.url), attempts: tries, error, next },
        'webhook delivery failed; will retry',
      );
    }
  }

  async function refreshCounts(): Promise<void> {
    const nowMs = Date.now();
    if (nowMs - countsAt < COUNTS_EVERY_MS) return;
    countsAt = nowMs;
    const rows = await readDb
      .selectFrom('webhook_deliveries')
      .select((eb) => ['webhook', eb.fn.countAll<number>().as('n')])
      .where('state', '=', 'pending')
      .groupBy('webhook')
      .execute();
    pendingBy = new Map(rows.map((r) => [r.webhook, Number(r.n)]));
  }

  async function pass(): Promise<number> {
    kicked = false;
    if (o.leader && !o.leader()) return IDLE_WAIT_MS;
    if (stale) {
      stale = false;
      hooks = await o.loadWebhooks();
      // A removed webhook's series go with it.
      for (const name of results.keys()) if (!hooks.some((h) => h.name === name)) results.delete(name);
    }
    await fanOut();
    const next = await deliverDue();
    await refreshCounts();
    return next;
  }

  async function run(): Promise<void> {
    while (!abort.signal.aborted) {
      let waitMs: number;
      try {
        waitMs = await pass();
      } catch (err: unknown) {
        if (abort.signal.aborted) break;
        log.warn({ err }, 'webhook dispatch pass failed; will retry');
        waitMs = ERROR_WAIT_MS;
      }
      if (abort.signal.aborted) break;
      const woken = new Promise<void>((resolve) => (wake = resolve));
      const waits: Promise<unknown>[] = [woken];
      const after = hooks.length > 0 ? Math.min(...hooks.map((h) => h.cursor)) : undefined;
      const bounded = Math.min(waitMs, IDLE_WAIT_MS);
      if (after !== undefined) waits.push(o.head.waitPast(after, bounded, abort.signal));
      else waits.push(new Promise((r) => setTimeout(r, bounded).unref()));
      if (bounded > 0 && !kicked) await Promise.race(waits);
      wake = undefined;
    }
  }

  return {
    start() {
      loop ??= run();
    },
    reload() {
      stale = true;
      kick();
    },
    metricsLines() {
      const names = [...new Set([...hooks.map((h) => h.name), ...results.keys()])].sort();
      return [
        '# HELP corral_webhook_deliveries_total Webhook delivery outcomes by webhook: delivered, retry (an attempt failed; tried again later), failed (given up), dropped (outbox full).',
        '# TYPE corral_webhook_deliveries_total counter',
        ...names.flatMap((n) =>
          RESULTS.map(
            (r) =>
              `corral_webhook_deliveries_total{webhook="${escapeLabel(n)}",result="${r}"} ${results.get(n)?.[r] ?? 0}`,
          ),
        ),
        '# HELP corral_webhook_outbox Deliveries waiting for an attempt, by webhook.',
        '# TYPE corral_webhook_outbox gauge',
        ...hooks.map(
          (h) => `corral_webhook_outbox{webhook="${escapeLabel(h.name)}"} ${pendingBy.get(h.name) ?? 0}`,
        ),
      ];
    },
    close() {
      closing ??= (async () => {
        abort.abort();
        kick();
        await loop;
        await Promise.allSettled([...running]);
        await agent.close();
      })();
      return closing;
    },
  };
}

import type { Kysely } from 'kysely';
import type { Logger } from 'pino';
import type { ControllerDatabase } from '../db/schema.js';
import { headCursor } from './event-log.js';

/** How often the head is read while someone waits for a newer event, in ms. */
export const HEAD_POLL_MS = 200;
/** How soon after an append the head is read, in ms (the append's transaction has usually committed). */
const NUDGE_MS = 5;

interface Waiter {
  readonly after: number;
  readonly resolve: (past: boolean) => void;
}

/**
 * Tells waiters when the stream's head moved past a cursor. Producers append inside their own
 * transactions, which this cannot see commit, so it reads the committed head: soon after each
 * append, and every HEAD_POLL_MS while anyone waits (never when nobody does).
 */
export interface HeadWatcher {
  /**
   * Resolves true once an event after `after` is committed, false after `timeoutMs` or when
   * `signal` aborts. Never rejects.
   */
  waitPast(after: number, timeoutMs: number, signal?: AbortSignal): Promise<boolean>;
  /** An append happened: read the head soon. */
  nudge(): void;
  /** Resolves every waiter with false and stops. Idempotent. */
  close(): void;
}

export function createHeadWatcher(o: {
  readonly readDb: Kysely<ControllerDatabase>;
  readonly log: Logger;
  readonly pollMs?: number;
}): HeadWatcher {
  const pollMs = o.pollMs ?? HEAD_POLL_MS;
  const waiters = new Set<Waiter>();
  let head = 0;
  let timer: NodeJS.Timeout | undefined;
  let reading = false;
  let again = false;
  let closed = false;

  function release(): void {
    for (const w of waiters) {
      if (head > w.after) {
        waiters.delete(w);
        w.resolve(true);
      }
    }
  }

  function schedule(ms: number): void {
    if (closed || waiters.size === 0) return;
    if (timer) clearTimeout(timer);
    timer = setTimeout(() => {
      timer = undefined;
      void read();
    }, ms);
    timer.unref();
  }

  async function read(): Promise<void> {
    if (reading) {
      again = true;
      return;
    }
    reading = true;
    try {
      head = Math.max(head, await headCursor(o.readDb));
      release();
    } catch (err: unknown) {
      // A read that failed (database busy, closing) is tried again at the next poll.
      if (!closed) o.log.warn({ err }, 'reading the fleet event head failed');
    } finally {
      reading = false;
    }
    if (again) {
      again = false;
      void read();
      return;
    }
    schedule(pollMs);
  }

  return {
    waitPast(after, timeoutMs, signal) {
      if (closed || signal?.aborted) return Promise.resolve(false);
      if (head > after) return Promise.resolve(true);
      return new Promise<boolean>((resolve) => {
        const done = (past: boolean): void => {
          clearTimeout(expiry);
          signal?.removeEventListener('abort', abort);
          waiters.delete(waiter);
          resolve(past);
        };
        const waiter: Waiter = { after, resolve: done };
        const abort = (): void => done(false);
        const expiry = setTimeout(() => done(false), timeoutMs);
        expiry.unref();
        signal?.addEventListener('abort', abort, { once: true });
        waiters.add(waiter);
        if (!timer && !reading) void read();
      });
    },
    nudge() {
      schedule(NUDGE_MS);
    },
    close() {
      closed = true;
      if (timer) clearTimeout(timer);
      timer = undefined;
      for (const w of [...waiters]) w.resolve(false);
      waiters.clear();
    },
  };
}

import { setTimeout as sleep } from 'node:timers/promises';
import type { Logger } from 'pino';
import { isCorralError, ErrorCode } from '../../protocol/errors.js';
import type { Deployer } from './deployer.js';

/** How often the scheduler re-places the spec, by default, in ms. */
export const DEFAULT_SCHEDULE_TICK_MS = 2_000;

export interface Scheduler {
  /** Runs a pass soon (a host was decommissioned, say) instead of at the next tick. */
  nudge(): void;
  /** Stops the loop and waits for the pass in flight. Idempotent. */
  close(): Promise<void>;
}

/**
 * The controller's own placement loop: every `tickMs` (or sooner after `nudge`) one
 * `deployer.reconcile()` pass, in turn with operator deploys. A pass that fails is logged and
 * the loop goes on; the loop ends when `signal` aborts or `close` is called.
 */
export function startScheduler(o: {
  readonly deployer: Deployer;
  readonly log: Logger;
  readonly signal: AbortSignal;
  readonly tickMs?: number;
  /** Passes run only while this says so (the leader of several controllers); default always. */
  readonly leader?: () => boolean;
}): Scheduler {
  const tickMs = o.tickMs ?? DEFAULT_SCHEDULE_TICK_MS;
  const stop = new AbortController();
  const signal = AbortSignal.any([o.signal, stop.signal]);
  let wake: AbortController | undefined;
  const loop = (async () => {
    while (!signal.aborted) {
      wake = new AbortController();
      try {
        await sleep(tickMs, undefined, { signal: AbortSignal.any([signal, wake.signal]) });
      } catch (e: unknown) {
        // An abort: shutdown ends the loop below, a nudge runs the pass now.
        if (!(e instanceof Error && e.name === 'AbortError')) throw e;
      }
      if (signal.aborted) break;
      if (o.leader && !o.leader()) continue;
      try {
        await o.deployer.reconcile();
      } catch (e: unknown) {
        if (isCorralError(e) && e.code === ErrorCode.UNAVAILABLE && signal.aborted) break;
        o.log.error({ err: e }, 'scheduler pass failed');
      }
    }
  })();
  return {
    nudge: () => wake?.abort(),
    async close() {
      stop.abort();
      await loop;
    },
  };
}

import { setTimeout as sleep } from 'node:timers/promises';
import type { Logger } from 'pino';
import type { ControllerList } from '../../protocol/controller-list.js';
import { MAX_HEARTBEAT_EVENTS, type HeartbeatRequest } from '../../protocol/heartbeat.js';
import { backoffDelayMs } from '../../kit/backoff.js';
import { ErrorCode, RemoteError } from '../../protocol/errors.js';
import type { ControllerClient } from './controller-client.js';
import type { EventOutbox } from './event-outbox.js';

export interface HeartbeatTiming {
  /** Default interval, in ms (the controller may ask for another, within the bounds). */
  readonly intervalMs: number;
  readonly minIntervalMs: number;
  readonly maxIntervalMs: number;
  /** Backoff while the controller is unreachable: full jitter from base, capped. */
  readonly backoffBaseMs: number;
  readonly backoffCapMs: number;
}

export interface HeartbeatLoopOptions {
  readonly client: () => ControllerClient;
  readonly outbox: EventOutbox;
  readonly timing: HeartbeatTiming;
  readonly random: () => number;
  readonly log: Logger;
  /** Everything but the events. */
  collect(): Promise<Omit<HeartbeatRequest, 'events'>>;
  /**
   * The controller answered 410 CORRAL_ERR_DECOMMISSIONED: this host was decommissioned (told
   * only on a verified connection to the controller, to this host's own certificate). Starts
   * the self-destruct; once it resolves the loop ends. If it throws, the loop logs and asks
   * again at the next attempt.
   */
  onDecommissioned?(): Promise<void>;
  /**
   * The answer listed the live controllers (it came over the verified mutual-TLS link, so the
   * list is the controller's). A failure is logged and the next answer brings the list again.
   */
  onControllers?(controllers: ControllerList): Promise<void>;
  /** Runs after each successful heartbeat (certificate renewal). */
  afterBeat(signal: AbortSignal): Promise<void>;
  /**
   * The agent certificate, so that while it has expired every failed heartbeat (one per
   * backoff) says so, with when and how to enroll again, instead of only "other side closed".
   */
  readonly certificate?: {
    notAfter(): Date | undefined;
    now(): number;
    /** What the operator does to enroll this worker again. */
    readonly reEnroll: string;
  };
}

/** Floor of a backoff sleep, in ms, so an unlucky jitter of 0 never spins. */
const MIN_BACKOFF_MS = 50;
/** Wait after a 429 that named none, in ms. */
const DEFAULT_RATE_LIMITED_WAIT_MS = 5_000;

/**
 * The wait before the next attempt after a failed one. A 429 (the controller's budget for this
 * host is used up) waits at least what its `Retry-After` asked, plus up to 20 % jitter so
 * agents told the same do not come back together; anything else backs off exponentially.
 */
function failureDelayMs(err: unknown, failures: number, t: HeartbeatTiming, random: () => number): number {
  if (err instanceof RemoteError && err.status === 429) {
    const asked = err.retryAfterMs ?? DEFAULT_RATE_LIMITED_WAIT_MS;
    return Math.max(MIN_BACKOFF_MS, Math.round(asked * (1 + 0.2 * random())));
  }
  return Math.max(MIN_BACKOFF_MS, backoffDelayMs(failures, t.backoffBaseMs, t.backoffCapMs, random));
}

function isDecommissioned(err: unknown): boolean {
  return err instanceof RemoteError && err.status === 410 && err.code === ErrorCode.DECOMMISSIONED;
}

/**
 * Posts a heartbeat every interval (±20 % jitter) until the signal aborts. Events ride along
 * until the controller acknowledges them. A controller outage is ridden out with capped
 * backoff, a 429 by waiting as long as the controller asked; the loop ends on its own only
 * when the controller says this host is decommissioned and the self-destruct has started.
 */
export async function runHeartbeatLoop(o: HeartbeatLoopOptions, signal: AbortSignal): Promise<void> {
  const t = o.timing;
  let interval = t.intervalMs;
  let failures = 0;
  while (!signal.aborted) {
    let delay: number;
    try {
      const body: HeartbeatRequest = {
        ...(await o.collect()),
        events: o.outbox.pending(MAX_HEARTBEAT_EVENTS),
      };
      const res = await o.client().heartbeat(body, signal);
      o.outbox.ack(res.ackedEventIds);
      interval = Math.min(t.maxIntervalMs, Math.max(t.minIntervalMs, res.intervalMs));
      if (failures > 0) o.log.info({ failures }, 'controller reachable again');
      failures = 0;
      delay = Math.round(interval * (0.8 + 0.4 * o.random()));
      if (res.controllers && o.onControllers) {
        await o.onControllers(res.controllers).catch((err: unknown) => {
          o.log.warn({ err }, 'the controller list could not be kept; the next heartbeat brings it again');
        });
      }
      await o.afterBeat(signal).catch((err: unknown) => {
        if (!signal.aborted) o.log.warn({ err }, 'certificate renewal failed; will retry');
      });
    } catch (err: unknown) {
      if (signal.aborted) return;
      if (isDecommissioned(err) && o.onDecommissioned) {
        o.log.error('the controller says this host is decommissioned; self-destructing');
        try {
          await o.onDecommissioned();
          return;
        } catch (e: unknown) {
          o.log.error({ err: e }, 'self-destruct after decommission could not start; will ask again');
        }
      }
      failures++;
      delay = failureDelayMs(err, failures, t, o.random);
      const notAfter = o.certificate?.notAfter();
      if (o.certificate && notAfter && notAfter.getTime() <= o.certificate.now()) {
        o.log.error(
          {
            err,
            failures,
            delayMs: delay,
            expiredAt: notAfter.toISOString(),
            reEnroll: o.certificate.reEnroll,
          },
          'heartbeat failed: the agent certificate has expired and the controller refuses it; enroll this worker again',
        );
      } else {
        const level = failures === 1 || failures % 10 === 0 ? 'warn' : 'debug';
        o.log[level]({ err, failures, delayMs: delay }, 'heartbeat failed');
      }
    }
    try {
      await sleep(delay, undefined, { signal });
    } catch {
      return; // AbortError: shutting down
    }
  }
}

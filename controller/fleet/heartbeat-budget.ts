import { MAX_WORKER_BODY_BYTES } from '../../protocol/constants.js';
import type { Clock } from '../clock.js';

/**
 * How much a host may send on `POST /v1/heartbeat`: two token buckets per host, one counting
 * heartbeats and one counting request bytes. An agent beats every interval (30 s by default),
 * so the defaults leave ample room for catching up after an outage while a worker posting as
 * fast as it can (a flood of event-laden heartbeats) is held to a trickle.
 */
export interface HeartbeatBudgetLimits {
  /** Heartbeats per second a host may send, sustained. */
  readonly perSecond: number;
  /** Heartbeats a host may send at once after a quiet spell. */
  readonly burst: number;
  /** Request bytes per second a host may send, sustained. */
  readonly bytesPerSecond: number;
  /** Bytes a host may send at once; at least one largest heartbeat (MAX_WORKER_BODY_BYTES). */
  readonly burstBytes: number;
}

export const DEFAULT_HEARTBEAT_BUDGET: HeartbeatBudgetLimits = {
  perSecond: 10,
  burst: 50,
  bytesPerSecond: 64 * 1024,
  burstBytes: 1024 * 1024,
};

export type BudgetDecision =
  | { readonly ok: true }
  | {
      readonly ok: false;
      /** When the same heartbeat would fit, in ms from now. */
      readonly retryAfterMs: number;
    };

export interface HeartbeatBudget {
  /**
   * Takes one heartbeat of `bytes` from the host's budget; when it does not fit, takes nothing
   * and says how long until it would.
   */
  take(hostId: string, bytes: number): BudgetDecision;
}

interface Buckets {
  beats: number;
  bytes: number;
  atMs: number;
}

const OK: BudgetDecision = { ok: true };

/** Checks the limits; throws a RangeError naming the one that cannot work. */
export function checkHeartbeatBudget(limits: HeartbeatBudgetLimits): void {
  const { perSecond, burst, bytesPerSecond, burstBytes } = limits;
  if (!(perSecond > 0 && Number.isFinite(perSecond))) throw new RangeError('heartbeat rate must be positive');
  if (!(burst >= 1 && Number.isFinite(burst))) throw new RangeError('heartbeat burst must be at least 1');
  if (!(bytesPerSecond > 0 && Number.isFinite(bytesPerSecond)))
    throw new RangeError('heartbeat byte rate must be positive');
  if (!(burstBytes >= MAX_WORKER_BODY_BYTES && Number.isFinite(burstBytes)))
    throw new RangeError(
      `heartbeat byte burst must be at least ${MAX_WORKER_BODY_BYTES} (one largest heartbeat)`,
    );
}

/**
 * Per-host budgets, refilled continuously from `clock` (a clock going backwards refills
 * nothing). `'unlimited'` admits everything. Only authenticated hosts reach it, so it holds
 * one small entry per pinned host.
 */
export function createHeartbeatBudget(
  limits: HeartbeatBudgetLimits | 'unlimited',
  clock: Clock,
): HeartbeatBudget {
  if (limits === 'unlimited') return { take: () => OK };
  checkHeartbeatBudget(limits);
  const { perSecond, burst, bytesPerSecond, burstBytes } = limits;
  const hosts = new Map<string, Buckets>();
  return {
    take(hostId, requested) {
      const nowMs = clock.now();
      const bytes = Math.min(Math.max(0, requested), burstBytes);
      let b = hosts.get(hostId);
      if (!b) {
        b = { beats: burst, bytes: burstBytes, atMs: nowMs };
        hosts.set(hostId, b);
      }
      const elapsedS = Math.max(0, nowMs - b.atMs) / 1000;
      b.beats = Math.min(burst, b.beats + elapsedS * perSecond);
      b.bytes = Math.min(burstBytes, b.bytes + elapsedS * bytesPerSecond);
      b.atMs = nowMs;
      if (b.beats >= 1 && b.bytes >= bytes) {
        b.beats -= 1;
        b.bytes -= bytes;
        return OK;
      }
      const waitBeatsMs = b.beats >= 1 ? 0 : ((1 - b.beats) / perSecond) * 1000;
      const waitBytesMs = b.bytes >= bytes ? 0 : ((bytes - b.bytes) / bytesPerSecond) * 1000;
      return { ok: false, retryAfterMs: Math.ceil(Math.max(waitBeatsMs, waitBytesMs)) };
    },
  };
}

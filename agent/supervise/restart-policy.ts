import type { RestartPolicy } from '../../protocol/service-spec.js';

export interface RestartLimits {
  /** More restarts than this inside `windowMs` and the service is `failed`. */
  readonly maxRestarts: number;
  readonly windowMs: number;
  /** First backoff, in ms; doubles per restart in the window. */
  readonly baseDelayMs: number;
  readonly maxDelayMs: number;
}

/** Issue defaults: 5 restarts in 10 minutes, backoff from 500 ms up to 30 s. */
export const DEFAULT_RESTART_LIMITS: RestartLimits = {
  maxRestarts: 5,
  windowMs: 10 * 60_000,
  baseDelayMs: 500,
  maxDelayMs: 30_000,
};

export interface ExitInfo {
  /** False when the process died while no agent watched it: code and signal are unknown. */
  readonly known: boolean;
  readonly code: number | null;
  readonly signal: string | null;
  /** Set when a restart could not even start the process. */
  readonly error?: string;
}

export type ExitDecision =
  | { readonly action: 'restart'; readonly delayMs: number; readonly reason: string }
  | { readonly action: 'stop'; readonly reason: string }
  | { readonly action: 'fail'; readonly reason: string };

export function describeExit(exit: ExitInfo): string {
  if (exit.error !== undefined) return `failed to start: ${exit.error}`;
  if (!exit.known) return 'exited while the agent was not running (status unknown)';
  if (exit.signal) return `killed by ${exit.signal}`;
  return `exited with code ${exit.code ?? 'unknown'}`;
}

function isCleanExit(exit: ExitInfo): boolean {
  return exit.known && exit.code === 0 && exit.signal === null;
}

/**
 * Exponential backoff with "equal jitter": half the ceiling is fixed, half random, so delays
 * grow with each attempt yet two services crashing together do not restart in lockstep.
 */
export function restartDelayMs(attempt: number, limits: RestartLimits, random: () => number): number {
  const ceiling = Math.min(limits.maxDelayMs, limits.baseDelayMs * 2 ** Math.min(attempt, 30));
  return Math.floor(ceiling / 2 + (random() * ceiling) / 2);
}

/** Restart times still inside the window ending at `now`. */
export function restartsInWindow(history: readonly number[], now: number, windowMs: number): number[] {
  return history.filter((t) => now - t < windowMs);
}

/**
 * What to do after a service's process ended. `history` holds the times of earlier restarts.
 * Pure: the supervisor carries the decision out.
 */
export function decideAfterExit(input: {
  readonly policy: RestartPolicy;
  readonly exit: ExitInfo;
  readonly history: readonly number[];
  readonly now: number;
  readonly limits: RestartLimits;
  readonly random: () => number;
}): ExitDecision {
  const { policy, exit, limits } = input;
  const what = describeExit(exit);
  if (policy === 'never' || (policy === 'on-failure' && isCleanExit(exit))) {
    return isCleanExit(exit) ? { action: 'stop', reason: what } : { action: 'fail', reason: what };
  }
  const recent = restartsInWindow(input.history, input.now, limits.windowMs);
  if (recent.length >= limits.maxRestarts) {
    return {
      action: 'fail',
      reason: `gave up after ${recent.length} restarts in ${Math.round(limits.windowMs / 1000)} s; last: ${what}`,
    };
  }
  return { action: 'restart', delayMs: restartDelayMs(recent.length, limits, input.random), reason: what };
}

import { setTimeout as sleep } from 'node:timers/promises';

export interface ShutdownPhase {
  readonly name: string;
  run(): Promise<void>;
  /** How long the phase may take before shutdown moves on, in ms. */
  readonly timeoutMs?: number;
}

export interface PhaseOutcome {
  readonly name: string;
  readonly ok: boolean;
  readonly error?: unknown;
  readonly timedOut?: boolean;
}

const DEFAULT_PHASE_TIMEOUT_MS = 10_000;

/**
 * Runs shutdown phases in order (stop accepting → abort loops → close clients → close the
 * database → flush logs). A phase that throws or overruns its timeout is reported and the
 * next phase still runs: shutdown never stops half-way.
 */
export async function runShutdown(phases: readonly ShutdownPhase[]): Promise<PhaseOutcome[]> {
  const outcomes: PhaseOutcome[] = [];
  for (const phase of phases) {
    const ac = new AbortController();
    const timeoutMs = phase.timeoutMs ?? DEFAULT_PHASE_TIMEOUT_MS;
    const timer = sleep(timeoutMs, 'timeout' as const, { signal: ac.signal }).catch(() => 'aborted' as const);
    try {
      const result = await Promise.race([phase.run().then(() => 'done' as const), timer]);
      outcomes.push(
        result === 'timeout'
          ? { name: phase.name, ok: false, timedOut: true }
          : { name: phase.name, ok: true },
      );
    } catch (error: unknown) {
      outcomes.push({ name: phase.name, ok: false, error });
    } finally {
      ac.abort();
    }
  }
  return outcomes;
}

/** Sleeps for a backoff with full jitter: uniform in [0, min(cap, base * 2^attempt)]. */
export function backoffDelayMs(
  attempt: number,
  baseMs: number,
  capMs: number,
  random: () => number = Math.random,
): number {
  const ceiling = Math.min(capMs, baseMs * 2 ** Math.min(attempt, 30));
  return Math.floor(random() * ceiling);
}

/** Pino redaction paths for anything that could carry key material or secrets. */
export const LOG_REDACT_PATHS: readonly string[] = [
  '*.keyPem',
  '*.key',
  '*.token',
  '*.password',
  'keyPem',
  'token',
  'req.headers.authorization',
  'headers.authorization',
  '*.privateKey',
];

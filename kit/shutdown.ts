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

export const SHUTDOWN_SIGNALS: readonly NodeJS.Signals[] = ['SIGTERM', 'SIGINT'];

export interface WaitForShutdownOptions {
  /**
   * true: a second signal while the phases run ends the wait at once (`forcedBy` says which);
   * what is still running is abandoned to the process exit. false: later signals are only
   * reported through `onSignal`, and the phases always run to their end.
   */
  readonly forceOnSecondSignal: boolean;
  /** Starts the shutdown without a signal when it settles (the daemon's own loop ended). */
  readonly until?: Promise<unknown>;
  /** Told of every signal, with how many have arrived (1 for the first). */
  readonly onSignal?: (signal: NodeJS.Signals, count: number) => void;
  readonly signals?: readonly NodeJS.Signals[];
}

export interface ShutdownResult {
  /** The signal that started the shutdown; undefined when `until` did. */
  readonly signal: NodeJS.Signals | undefined;
  /** The second signal that cut the phases short, when `forceOnSecondSignal` is on. */
  readonly forcedBy: NodeJS.Signals | undefined;
  /** One per phase, in order; empty when a forcing signal came before the last one ended. */
  readonly outcomes: readonly PhaseOutcome[];
}

/**
 * The one shutdown path of every daemon: waits for SIGTERM/SIGINT (or `until`), then runs the
 * phases with runShutdown. `phases` may be a function, called once the shutdown starts, for
 * daemons whose last steps depend on why they stop. The handlers are removed before this
 * returns, so the CLI entry's own handling of a later signal applies; nothing here exits.
 */
export async function waitForShutdown(
  phases: readonly ShutdownPhase[] | (() => readonly ShutdownPhase[]),
  options: WaitForShutdownOptions,
): Promise<ShutdownResult> {
  const signals = options.signals ?? SHUTDOWN_SIGNALS;
  let count = 0;
  let first: (signal: NodeJS.Signals) => void = () => undefined;
  let second: (signal: NodeJS.Signals) => void = () => undefined;
  const firstSignal = new Promise<NodeJS.Signals>((resolve) => (first = resolve));
  const secondSignal = new Promise<NodeJS.Signals>((resolve) => (second = resolve));
  const onSignal = (signal: NodeJS.Signals): void => {
    count++;
    options.onSignal?.(signal, count);
    if (count === 1) first(signal);
    else if (options.forceOnSecondSignal) second(signal);
  };
  for (const s of signals) process.on(s, onSignal);
  try {
    const until = options.until?.then(
      () => undefined,
      () => undefined /* the caller sees the failure through its own promise */,
    );
    const signal = await (until ? Promise.race([firstSignal, until]) : firstSignal);
    const list = typeof phases === 'function' ? phases() : phases;
    const outcomes: PhaseOutcome[] = [];
    const running = runShutdown(list).then((all) => void outcomes.push(...all));
    const forcedBy = await Promise.race([running.then(() => undefined), secondSignal]);
    return { signal, forcedBy, outcomes };
  } finally {
    for (const s of signals) process.off(s, onSignal);
  }
}

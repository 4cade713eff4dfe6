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

export interface ShutdownSignalOptions {
  /**
   * true: a second signal while the phases run ends the wait at once (`forcedBy` says which);
   * what is still running is abandoned to the process exit. false: later signals are only
   * reported through `onSignal`, and the phases always run to their end.
   */
  readonly forceOnSecondSignal: boolean;
  /** Told of every signal, with how many have arrived (1 for the first). */
  readonly onSignal?: (signal: NodeJS.Signals, count: number) => void;
  readonly signals?: readonly NodeJS.Signals[];
}

export interface WaitForShutdownOptions extends ShutdownSignalOptions {
  /** Starts the shutdown without a signal when it settles (the daemon's own loop ended). */
  readonly until?: Promise<unknown>;
}

export interface ShutdownResult {
  /** The signal that started the shutdown; undefined when `until` did. */
  readonly signal: NodeJS.Signals | undefined;
  /** The second signal that cut the phases short, when `forceOnSecondSignal` is on. */
  readonly forcedBy: NodeJS.Signals | undefined;
  /** One per phase, in order; empty when a forcing signal came before the last one ended. */
  readonly outcomes: readonly PhaseOutcome[];
}

export interface ShutdownListener {
  /** A signal has arrived (a daemon still starting may stop early). */
  readonly signalled: boolean;
  /**
   * Waits for the first signal (at once when one came already) or `until`, then runs the
   * phases. `phases` may be a function, called once the shutdown starts, for daemons whose
   * last steps depend on why they stop. The handlers are removed before this returns.
   */
  wait(
    phases: readonly ShutdownPhase[] | (() => readonly ShutdownPhase[]),
    until?: Promise<unknown>,
  ): Promise<ShutdownResult>;
  /** Removes the handlers without waiting (the daemon failed to start); idempotent. */
  dispose(): void;
}

/**
 * Takes over SIGTERM/SIGINT now, before a daemon starts its listeners, so a signal that
 * arrives while it starts (right after it announced its address, say) is kept and honoured
 * once `wait` is called, instead of killing the process with no shutdown at all. Nothing
 * here exits: after `wait` or `dispose`, the CLI entry's own handling of a signal applies.
 */
export function listenForShutdown(options: ShutdownSignalOptions): ShutdownListener {
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
  let disposed = false;
  const dispose = (): void => {
    if (disposed) return;
    disposed = true;
    for (const s of signals) process.off(s, onSignal);
  };
  return {
    get signalled() {
      return count > 0;
    },
    async wait(phases, until) {
      try {
        const ended = until?.then(
          () => undefined,
          () => undefined /* the caller sees the failure through its own promise */,
        );
        const signal = await (ended ? Promise.race([firstSignal, ended]) : firstSignal);
        const list = typeof phases === 'function' ? phases() : phases;
        const outcomes: PhaseOutcome[] = [];
        const running = runShutdown(list).then((all) => void outcomes.push(...all));
        const forcedBy = await Promise.race([running.then(() => undefined), secondSignal]);
        return { signal, forcedBy, outcomes };
      } finally {
        dispose();
      }
    },
    dispose,
  };
}

/**
 * The one shutdown path of every daemon: listenForShutdown and wait at once. Daemons that
 * start listeners take the listener before they start instead (see listenForShutdown).
 */
export async function waitForShutdown(
  phases: readonly ShutdownPhase[] | (() => readonly ShutdownPhase[]),
  options: WaitForShutdownOptions,
): Promise<ShutdownResult> {
  return listenForShutdown(options).wait(phases, options.until);
}

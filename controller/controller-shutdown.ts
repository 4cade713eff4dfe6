import type { ShutdownPhase } from '../kit/shutdown.js';

/** How long each phase of the controller's own shutdown may take before the next starts, in ms. */
export const CONTROLLER_PHASE_TIMEOUT_MS = {
  'stop-accepting': 5_000,
  /** Aborted operations still record their end (operation, steps, audit) in the database. */
  'abort-operations': 15_000,
  /** Requests in flight (a decommission waits for the self-destruct) and queued heartbeats. */
  drain: 20_000,
  'close-clients': 5_000,
} as const;

/** The work of each phase, in the order they run. */
export interface ControllerShutdownSteps {
  /** Every listener stops accepting connections; new requests on open ones are answered 503. */
  stopAccepting(): Promise<void>;
  /** The controller's root signal aborts; resolves once the operations in flight recorded their end. */
  abortOperations(): Promise<void>;
  /** Requests in flight are answered, queued heartbeats written, background writers stopped. */
  drain(): Promise<void>;
  /** Connections to workers are closed and temporary files removed. */
  closeClients(): Promise<void>;
}

/**
 * The controller's shutdown as phases, each with its own timeout, so that a phase that
 * overruns cannot eat the time of the next. Each step runs at most once: running the phases
 * again (close() after `serve` ran them with its own after) waits for the same work.
 */
export function controllerShutdownPhases(steps: ControllerShutdownSteps): readonly ShutdownPhase[] {
  const once = (fn: () => Promise<void>): (() => Promise<void>) => {
    let running: Promise<void> | undefined;
    return () => (running ??= fn());
  };
  const phase = (name: keyof typeof CONTROLLER_PHASE_TIMEOUT_MS, fn: () => Promise<void>): ShutdownPhase => ({
    name,
    run: once(fn),
    timeoutMs: CONTROLLER_PHASE_TIMEOUT_MS[name],
  });
  return [
    phase('stop-accepting', () => steps.stopAccepting()),
    phase('abort-operations', () => steps.abortOperations()),
    phase('drain', () => steps.drain()),
    phase('close-clients', () => steps.closeClients()),
  ];
}

/** Waits for every promise; then rejects with the first failure, if any. */
export async function settleAll(promises: readonly Promise<unknown>[]): Promise<void> {
  const failure = (await Promise.allSettled(promises)).find(
    (s): s is PromiseRejectedResult => s.status === 'rejected',
  );
  if (failure) throw failure.reason;
}

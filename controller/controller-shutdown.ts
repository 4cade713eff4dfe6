import { CorralError, ErrorCode } from '../protocol/errors.js';
import type { ShutdownPhase } from '../kit/shutdown.js';
import type { ListenerClose } from './http/listener-close.js';

/** How long each phase of the controller's own shutdown may take before the next starts, in ms. */
export const CONTROLLER_PHASE_TIMEOUT_MS = {
  'stop-accepting': 5_000,
  /** Aborted operations still record their end (operation, steps, audit) in the database. */
  'abort-operations': 15_000,
  /** Requests in flight (a decommission waits for the self-destruct) and queued heartbeats. */
  drain: 20_000,
  'close-clients': 5_000,
} as const;

export interface Closable {
  close(): Promise<void>;
}

/** What each phase closes. */
export interface ControllerShutdownParts {
  /** stop-accepting: every listener stops accepting; drain: their requests in flight end. */
  readonly listeners: readonly ListenerClose[];
  /** abort-operations aborts it, then closes `operations`. */
  readonly root: AbortController;
  /** Each waits for its operation in flight to record its end (deployer, release updater). */
  readonly operations: readonly Closable[];
  /** drain, in order, once the listeners are drained: what requests queued is written. */
  readonly writers: readonly Closable[];
  /** close-clients, in order: connections to workers, temporary files. */
  readonly clients: readonly Closable[];
}

/**
 * The controller's shutdown as phases, each with its own timeout, so that a phase that
 * overruns cannot eat the time of the next: stop-accepting → abort-operations → drain →
 * close-clients. Each step runs at most once: running the phases again (close() after `serve`
 * ran them with its own after) waits for the same work.
 */
export function controllerShutdownPhases(parts: ControllerShutdownParts): readonly ShutdownPhase[] {
  const once = (fn: () => Promise<void>): (() => Promise<void>) => {
    let running: Promise<void> | undefined;
    return () => (running ??= fn());
  };
  const phase = (name: keyof typeof CONTROLLER_PHASE_TIMEOUT_MS, fn: () => Promise<void>): ShutdownPhase => ({
    name,
    run: once(fn),
    timeoutMs: CONTROLLER_PHASE_TIMEOUT_MS[name],
  });
  const inOrder = async (all: readonly Closable[]): Promise<void> => {
    for (const c of all) await c.close();
  };
  return [
    phase('stop-accepting', () => settleAll(parts.listeners.map((l) => l.stopAccepting()))),
    phase('abort-operations', () => {
      parts.root.abort(new CorralError(ErrorCode.UNAVAILABLE, 'controller is shutting down'));
      return settleAll(parts.operations.map((o) => o.close()));
    }),
    phase('drain', async () => {
      await settleAll(parts.listeners.map((l) => l.drained()));
      await inOrder(parts.writers);
    }),
    phase('close-clients', () => inOrder(parts.clients)),
  ];
}

/** Waits for every promise; then rejects with the first failure, if any. */
async function settleAll(promises: readonly Promise<unknown>[]): Promise<void> {
  const failure = (await Promise.allSettled(promises)).find(
    (s): s is PromiseRejectedResult => s.status === 'rejected',
  );
  if (failure) throw failure.reason;
}

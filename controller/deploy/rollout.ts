import type { Kysely } from 'kysely';
import type { HostDispatchResult } from '../../protocol/deployment.js';
import type { OperationState, OperationSummary } from '../../protocol/operations.js';
import type { WorkerClient } from '../agent-client.js';
import type { ControllerDatabase } from '../db/schema.js';
import type { PinRegistry } from '../pins/pin-registry.js';
import { mapConcurrent } from '../../kit/concurrency.js';
import { applyToHost } from './agent-apply.js';
import { storeOutcome, type HostSet } from './desired-state.js';
import type { OperationRecorder } from './operations.js';

export interface RolloutDeps {
  readonly client: WorkerClient;
  readonly pins: PinRegistry;
  readonly concurrency: number;
  readonly timeoutMs: number;
  /** Aborted: hosts not yet answered fail with the shutdown as their reason. */
  readonly signal: AbortSignal;
}

export interface RolloutResult {
  readonly hosts: HostDispatchResult[];
  readonly state: OperationState;
  readonly failed: number;
}

export function operationState(total: number, failed: number): OperationState {
  if (failed === 0) return 'succeeded';
  return failed === total ? 'failed' : 'partial';
}

/**
 * Sends every host in `sets` its whole set, at most `concurrency` at once, and records each
 * answer as it comes: the step, a log line, and the dispatch state of that host's services
 * (all `failed` with the reason when the host failed; other hosts are not touched).
 */
export async function rollout(
  deps: RolloutDeps,
  op: OperationRecorder,
  sets: readonly HostSet[],
  summary: Omit<OperationSummary, 'failedHosts'>,
  kind: string,
): Promise<RolloutResult> {
  const results = new Array<HostDispatchResult>(sets.length);
  await mapConcurrent(sets, deps.concurrency, async (set, i) => {
    const host = set.host.name;
    const n = set.services.length;
    await op.record(
      [{ level: 'info', host, message: `sending generation ${set.generation} (${n} services)` }],
      { hostId: set.host.id, state: 'running' },
    );
    const out = await applyToHost(
      deps.client,
      {
        hostId: set.host.id,
        address: set.host.address,
        port: set.host.agentPort,
        fingerprints: deps.pins.fingerprintsFor(set.host.id, 'agent'),
      },
      set.generation,
      set.services,
      { timeoutMs: deps.timeoutMs, signal: deps.signal },
    );
    if (out.outcome === 'failed') {
      await op.record(
        [{ level: 'error', host, message: `failed: ${out.reason}` }],
        { hostId: set.host.id, state: 'failed', detail: out.reason, generation: out.generation },
        (trx: Kysely<ControllerDatabase>, nowIso) =>
          storeOutcome(trx, set.host.id, { ok: false, reason: out.reason }, nowIso),
      );
      results[i] = { host, outcome: 'failed', generation: out.generation, services: n, reason: out.reason };
      return;
    }
    const message =
      out.outcome === 'applied'
        ? `generation ${out.generation} accepted (${n} services)`
        : `generation ${out.generation} unchanged (the agent already had it)`;
    await op.record(
      [{ level: 'info', host, message }],
      { hostId: set.host.id, state: 'succeeded', detail: out.outcome, generation: out.generation },
      (trx, nowIso) => storeOutcome(trx, set.host.id, { ok: true, generation: out.generation }, nowIso),
    );
    results[i] = { host, outcome: out.outcome, generation: out.generation, services: n, reason: null };
  });
  const failed = results.filter((r) => r.outcome === 'failed').length;
  const state = operationState(sets.length, failed);
  await op.finish(
    state,
    { ...summary, failedHosts: failed },
    {
      level: failed === 0 ? 'info' : 'error',
      message:
        failed === 0
          ? `${kind} ${state}: ${sets.length} hosts`
          : `${kind} ${state}: ${failed} of ${sets.length} hosts failed`,
    },
  );
  return { hosts: results, state, failed };
}

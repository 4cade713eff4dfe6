import type { Kysely } from 'kysely';
import type { HostDispatchResult } from '../../protocol/deployment.js';
import type { OperationState, OperationSummary } from '../../protocol/operations.js';
import type { WorkerClient } from '../agent-client.js';
import type { ControllerDatabase } from '../db/schema.js';
import type { PinRegistry } from '../pins/pin-registry.js';
import { mapConcurrent } from '../../kit/concurrency.js';
import { applyToHost } from './agent-apply.js';
import { storeOutcome, type HostSet } from './desired-state.js';
import { saveHalted } from './halted-rollouts.js';
import type { OperationRecorder } from './operations.js';
import { executeRollout } from './rollout-executor.js';
import { planRollout, type RolloutPolicy } from './rollout-plan.js';

export interface RolloutDeps {
  readonly client: WorkerClient;
  readonly pins: PinRegistry;
  readonly concurrency: number;
  readonly timeoutMs: number;
  /** Aborted: hosts not yet answered fail with the shutdown as their reason. */
  readonly signal: AbortSignal;
}

export interface RolloutResult {
  /** Every host of `sets`, in their order: those never sent are `untouched`. */
  readonly hosts: HostDispatchResult[];
  readonly state: OperationState;
  /** Hosts of the whole operation that failed. */
  readonly failed: number;
  /** Why the operation did not succeed as a whole (where it halted), or null. */
  readonly reason: string | null;
}

export function operationState(total: number, failed: number): OperationState {
  if (failed === 0) return 'succeeded';
  return failed === total ? 'failed' : 'partial';
}

/** A staged rollout: the policy, and (resumed) what the operation's earlier run already did. */
export interface StagedRollout {
  readonly policy: RolloutPolicy;
  /** Hosts of the operation sent before this run, and how many of them failed. */
  readonly earlier?: { readonly hosts: number; readonly failed: number };
  /** Every host id of the operation in rollout order (kept for a resume when it halts). */
  readonly order: readonly string[];
}

/**
 * Sends every host in `sets` its whole set and records each answer as it comes: the step, a
 * log line, and the dispatch state of that host's services (all `failed` with the reason when
 * the host failed; other hosts are not touched). Without `staged`, at most `concurrency` at
 * once and all of them; with it, in the policy's batches (rollout-plan.ts): a halt leaves the
 * hosts after it untouched (their steps `pending`) and ends the operation `halted`, kept for
 * `ops resume`.
 */
export async function rollout(
  deps: RolloutDeps,
  op: OperationRecorder,
  sets: readonly HostSet[],
  summary: Omit<OperationSummary, 'failedHosts'>,
  kind: string,
  staged?: StagedRollout,
): Promise<RolloutResult> {
  const results = new Map<string, HostDispatchResult>();
  const sendOne = async (set: HostSet): Promise<HostDispatchResult> => {
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
      return { host, outcome: 'failed', generation: out.generation, services: n, reason: out.reason };
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
    return { host, outcome: out.outcome, generation: out.generation, services: n, reason: null };
  };
  const sendBatch = async (batch: readonly HostSet[]) => {
    const answers = await mapConcurrent(batch, deps.concurrency, sendOne);
    for (const [i, a] of answers.entries()) {
      const set = batch[i];
      if (set) results.set(set.host.id, a);
    }
    return answers.map((a) => ({ ok: a.outcome !== 'failed', reason: a.reason }));
  };

  let halted: { host: HostSet; reason: string } | null = null;
  if (!staged) {
    await sendBatch(sets);
  } else {
    const out = await executeRollout<HostSet>({
      steps: planRollout(sets, staged.policy),
      haltOnFailure: staged.policy.haltOnFailure,
      signal: deps.signal,
      async sendBatch(batch, canary) {
        await op.record([
          {
            level: 'info',
            message: `${canary ? 'canary batch' : 'batch'}: ${batch.map((s) => s.host.name).join(', ')}`,
          },
        ]);
        return sendBatch(batch);
      },
      async onCanaryWait(ms, canaries) {
        await op.record([
          {
            level: 'info',
            message: `waiting ${Math.round(ms / 1000)} s before the rest (canaries: ${canaries.map((s) => s.host.name).join(', ')})`,
          },
        ]);
      },
    });
    halted = out.halted;
  }
  const hosts = sets.map(
    (s): HostDispatchResult =>
      results.get(s.host.id) ?? {
        host: s.host.name,
        outcome: 'untouched',
        generation: s.generation,
        services: s.services.length,
        reason: null,
      },
  );
  const failedNow = hosts.filter((r) => r.outcome === 'failed').length;
  const total = sets.length + (staged?.earlier?.hosts ?? 0);
  const failed = failedNow + (staged?.earlier?.failed ?? 0);
  let state = operationState(total, failed);
  let reason: string | null = null;
  const untouched = hosts.filter((h) => h.outcome === 'untouched').length;
  if (halted && staged) {
    state = 'halted';
    reason = `halted at ${halted.host.host.name}: ${halted.reason}`.slice(0, 2000);
    const policy = staged.policy;
    const order = staged.order;
    await op.record([], undefined, (trx, nowIso) =>
      saveHalted(trx, op.id, 'deploy', { policy, hosts: [...order] }, nowIso),
    );
  }
  await op.finish(
    state,
    { ...summary, hosts: total, failedHosts: failed },
    {
      level: failed === 0 ? 'info' : 'error',
      message: halted
        ? `${kind} halted at ${halted.host.host.name} (${halted.reason}); ${untouched} hosts untouched; ` +
          `\`corral controller ops resume ${op.id}\` or \`ops cancel ${op.id}\``
        : failed === 0
          ? `${kind} ${state}: ${total} hosts`
          : `${kind} ${state}: ${failed} of ${total} hosts failed`,
    },
    reason,
  );
  return { hosts, state, failed, reason };
}

import type { Kysely } from 'kysely';
import type { HostDispatchResult } from '../../protocol/deployment.js';
import type { OperationState, OperationSummary } from '../../protocol/operations.js';
import type { WorkerClient, WorkerTarget } from '../agent-client.js';
import type { ControllerDatabase } from '../db/schema.js';
import type { PinRegistry } from '../pins/pin-registry.js';
import { mapConcurrent } from '../../kit/concurrency.js';
import { applyToHost } from './agent-apply.js';
import { awaitHealthy, DEFAULT_HEALTH_START_MS } from './health-gate.js';
import { storeOutcome, type HostSet } from './desired-state.js';
import { saveHalted } from './halted-rollouts.js';
import type { OperationRecorder } from './operations.js';
import { executeRollout } from './rollout-executor.js';
import { planRollout, storedPolicy, type RolloutPolicy } from './rollout-plan.js';

export interface RolloutDeps {
  readonly client: WorkerClient;
  readonly pins: PinRegistry;
  readonly concurrency: number;
  readonly timeoutMs: number;
  /** Aborted: hosts not yet answered fail with the shutdown as their reason. */
  readonly signal: AbortSignal;
  /** How long a gated host's services may take to come up, in ms (default 60 s). */
  readonly healthStartMs?: number;
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
  /** The host's agent, reached over its pinned certificate. */
  const agentTarget = (set: HostSet): WorkerTarget => ({
    hostId: set.host.id,
    address: set.host.address,
    port: set.host.agentPort,
    fingerprints: deps.pins.fingerprintsFor(set.host.id, 'agent'),
  });
  const sendOne = async (set: HostSet): Promise<HostDispatchResult> => {
    const host = set.host.name;
    const n = set.services.length;
    await op.record(
      [{ level: 'info', host, message: `sending generation ${set.generation} (${n} services)` }],
      { hostId: set.host.id, state: 'running' },
    );
    const target = agentTarget(set);
    const out = await applyToHost(deps.client, target, set.generation, set.services, {
      timeoutMs: deps.timeoutMs,
      signal: deps.signal,
    });
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
    const gateMs = staged?.policy.minHealthyMs ?? null;
    if (gateMs === null || n === 0) {
      await op.record(
        [{ level: 'info', host, message }],
        { hostId: set.host.id, state: 'succeeded', detail: out.outcome, generation: out.generation },
        (trx, nowIso) => storeOutcome(trx, set.host.id, { ok: true, generation: out.generation }, nowIso),
      );
      return { host, outcome: out.outcome, generation: out.generation, services: n, reason: null };
    }
    // The agent has the set: its dispatch is done whatever the health check finds.
    await op.record(
      [{ level: 'info', host, message: `${message}; waiting for its services to run for ${gateMs} ms` }],
      undefined,
      (trx, nowIso) => storeOutcome(trx, set.host.id, { ok: true, generation: out.generation }, nowIso),
    );
    const health = await awaitHealthy(
      deps.client,
      target,
      out.generation,
      set.services,
      { minHealthyMs: gateMs, startMs: deps.healthStartMs ?? DEFAULT_HEALTH_START_MS },
      deps.signal,
    );
    if (!health.ok) {
      const reason = `unhealthy: ${health.reason}`;
      await op.record([{ level: 'error', host, message: reason }], {
        hostId: set.host.id,
        state: 'failed',
        detail: reason,
        generation: out.generation,
      });
      return { host, outcome: 'failed', generation: out.generation, services: n, reason };
    }
    await op.record([{ level: 'info', host, message: `${n} services running for ${gateMs} ms` }], {
      hostId: set.host.id,
      state: 'succeeded',
      detail: out.outcome,
      generation: out.generation,
    });
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
      ...(staged.policy.minHealthyMs !== null && {
        async checkCanaries(canaries: readonly HostSet[]) {
          const sick = new Map<HostSet, string>();
          for (const set of canaries) {
            const sent = results.get(set.host.id);
            const look = await awaitHealthy(
              deps.client,
              agentTarget(set),
              sent?.generation ?? set.generation,
              set.services,
              { minHealthyMs: 0, startMs: 0 },
              deps.signal,
            );
            if (look.ok) continue;
            const reason = `unhealthy after the canary wait: ${look.reason}`;
            sick.set(set, look.reason);
            if (sent) results.set(set.host.id, { ...sent, outcome: 'failed', reason });
            await op.record([{ level: 'error', host: set.host.name, message: reason }], {
              hostId: set.host.id,
              state: 'failed',
              detail: reason,
            });
          }
          return sick;
        },
      }),
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
  // With auto-revert the deployer puts the previous spec back at once: nothing to resume.
  const reverting = staged?.policy.autoRevert === true && failed > 0;
  if (halted && staged && !reverting) {
    state = 'halted';
    reason = `halted at ${halted.host.host.name}: ${halted.reason}`.slice(0, 2000);
    const policy = staged.policy;
    const order = staged.order;
    await op.record([], undefined, (trx, nowIso) =>
      saveHalted(trx, op.id, 'deploy', { policy: storedPolicy(policy), hosts: [...order] }, nowIso),
    );
  } else if (reverting) {
    const first = halted?.host ?? sets.find((s) => results.get(s.host.id)?.outcome === 'failed');
    const why = halted?.reason ?? (first ? results.get(first.host.id)?.reason : null) ?? 'failed';
    reason = `${first ? `${first.host.name}: ` : ''}${why}; the previous spec is put back`.slice(0, 2000);
  }
  const ending = halted
    ? `${kind} halted at ${halted.host.host.name} (${halted.reason}); ${untouched} hosts untouched; ` +
      (reverting
        ? 'the previous spec is put back'
        : `\`corral controller ops resume ${op.id}\` or \`ops cancel ${op.id}\``)
    : failed === 0
      ? `${kind} ${state}: ${total} hosts`
      : `${kind} ${state}: ${failed} of ${total} hosts failed${reverting ? '; the previous spec is put back' : ''}`;
  await op.finish(
    state,
    { ...summary, hosts: total, failedHosts: failed },
    { level: failed === 0 ? 'info' : 'error', message: ending },
    reason,
  );
  return { hosts, state, failed, reason };
}

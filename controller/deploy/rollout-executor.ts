import { setTimeout as sleep } from 'node:timers/promises';
import type { RolloutStep } from './rollout-plan.js';

/** How one host's step ended. */
export interface HostStepOutcome {
  readonly ok: boolean;
  readonly reason: string | null;
}

export interface RolloutExecution<H> {
  readonly steps: readonly RolloutStep<H>[];
  readonly haltOnFailure: boolean;
  /** Sends one batch (its hosts at once) and says how each host ended, in the batch's order. */
  sendBatch(hosts: readonly H[], canary: boolean): Promise<readonly HostStepOutcome[]>;
  /** Before a canary wait starts (to log it). */
  onCanaryWait?(ms: number, canaries: readonly H[]): Promise<void>;
  /**
   * After the canary wait: the canaries that are no longer healthy, with why (empty: all are).
   * Absent: the canaries count as healthy when their batch succeeded.
   */
  checkCanaries?(canaries: readonly H[]): Promise<ReadonlyMap<H, string>>;
  /** Aborted: the wait and the batches not yet started are given up (the call throws). */
  readonly signal: AbortSignal;
}

export interface RolloutExecutionResult<H> {
  /** The first host that failed when that halted the rollout; null when it ran to its end. */
  readonly halted: { readonly host: H; readonly reason: string } | null;
  /** Hosts sent (or checked) that failed, with why, in order. */
  readonly failed: readonly { readonly host: H; readonly reason: string }[];
  /** Hosts never sent because the rollout halted. */
  readonly untouched: readonly H[];
}

/**
 * Runs a rollout plan (rollout-plan.ts) step by step: each batch waits for the one before it;
 * a canary wait sleeps, then asks whether the canaries are still healthy (a canary that is not
 * counts as failed). With `haltOnFailure`, the first failure stops it before the next step.
 * Throws only when `signal` aborts or a callback throws.
 */
export async function executeRollout<H>(x: RolloutExecution<H>): Promise<RolloutExecutionResult<H>> {
  const failed: { host: H; reason: string }[] = [];
  const canaryFailed = new Set<H>();
  for (const [i, step] of x.steps.entries()) {
    x.signal.throwIfAborted();
    if (step.kind === 'batch') {
      const outcomes = await x.sendBatch(step.hosts, step.canary);
      for (const [j, host] of step.hosts.entries()) {
        const out = outcomes[j];
        if (out?.ok === true) continue;
        failed.push({ host, reason: out?.reason ?? 'no outcome' });
        if (step.canary) canaryFailed.add(host);
      }
    } else {
      // Canaries that already failed are not waited for: the wait watches the healthy ones.
      const watched = step.canaries.filter((h) => !canaryFailed.has(h));
      if (!(x.haltOnFailure && failed.length > 0) && watched.length > 0) {
        await x.onCanaryWait?.(step.ms, watched);
        await sleep(step.ms, undefined, { signal: x.signal });
        const sick = (await x.checkCanaries?.(watched)) ?? new Map<H, string>();
        for (const host of watched) {
          const why = sick.get(host);
          if (why !== undefined) failed.push({ host, reason: `canary unhealthy after the wait: ${why}` });
        }
      }
    }
    const first = failed[0];
    if (x.haltOnFailure && first !== undefined) {
      const untouched = x.steps.slice(i + 1).flatMap((s) => (s.kind === 'batch' ? s.hosts : []));
      return { halted: untouched.length > 0 ? first : null, failed, untouched };
    }
  }
  return { halted: null, failed, untouched: [] };
}

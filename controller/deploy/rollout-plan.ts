import {
  DEFAULT_CANARY_WAIT_MS,
  DEFAULT_UPDATE_BATCH_PERCENT,
  type HaltedRollout,
  type RolloutOptions,
} from '../../protocol/rollout.js';

/** One step of a rollout: a batch of hosts sent at once, or the pause after the canaries. */
export type RolloutStep<H> =
  | { readonly kind: 'batch'; readonly hosts: readonly H[]; readonly canary: boolean }
  | { readonly kind: 'canary-wait'; readonly ms: number; readonly canaries: readonly H[] };

/** Rollout options with every default filled in. */
export interface RolloutPolicy {
  readonly maxParallel: number;
  readonly canary: number;
  readonly canaryWaitMs: number;
  readonly haltOnFailure: boolean;
  /** Deploys only (null: no health gate, as for updates, whose updater checks health itself). */
  readonly minHealthyMs: number | null;
  readonly autoRevert: boolean;
}

/**
 * The options with their defaults for `kind` over `hosts` hosts: a deploy sends every host at
 * once and watches its services for `defaultMinHealthyMs`, an update a quarter of them (at
 * least one) with no gate here; halting on failure is on, auto-revert off.
 */
export function rolloutPolicy(
  kind: 'deploy' | 'update',
  hosts: number,
  o: RolloutOptions = {},
  defaultMinHealthyMs = 0,
): RolloutPolicy {
  const batch =
    kind === 'deploy'
      ? Math.max(1, hosts)
      : Math.max(1, Math.ceil((hosts * DEFAULT_UPDATE_BATCH_PERCENT) / 100));
  return {
    maxParallel: o.maxParallel ?? batch,
    canary: o.canary ?? 0,
    canaryWaitMs: o.canaryWaitMs ?? DEFAULT_CANARY_WAIT_MS,
    haltOnFailure: o.haltOnFailure ?? true,
    minHealthyMs: kind === 'deploy' ? (o.minHealthyMs ?? defaultMinHealthyMs) : null,
    autoRevert: kind === 'deploy' && (o.autoRevert ?? false),
  };
}

type StoredPolicy = HaltedRollout['policy'];

/** The policy as a halted rollout keeps it (no gate: the field left out). */
export function storedPolicy(p: RolloutPolicy): StoredPolicy {
  const { minHealthyMs, autoRevert, ...rest } = p;
  return { ...rest, ...(minHealthyMs !== null && { minHealthyMs }), autoRevert };
}

/** A kept policy back, as a resume runs it: no canary this time. */
export function resumedPolicy(p: StoredPolicy): RolloutPolicy {
  return {
    maxParallel: p.maxParallel,
    canary: 0,
    canaryWaitMs: p.canaryWaitMs,
    haltOnFailure: p.haltOnFailure,
    minHealthyMs: p.minHealthyMs ?? null,
    autoRevert: p.autoRevert ?? false,
  };
}

/**
 * The steps that send `hosts` in their order: the first `canary` hosts as one batch (split by
 * `maxParallel`) followed by a wait (none when every host is a canary), then the rest in
 * batches of `maxParallel`. Every host appears in exactly one batch; no batch is empty.
 */
export function planRollout<H>(hosts: readonly H[], p: RolloutPolicy): RolloutStep<H>[] {
  const steps: RolloutStep<H>[] = [];
  const size = Math.max(1, Math.floor(p.maxParallel));
  const canaries = hosts.slice(0, Math.max(0, Math.min(p.canary, hosts.length)));
  const rest = hosts.slice(canaries.length);
  const batches = (list: readonly H[], canary: boolean): void => {
    for (let i = 0; i < list.length; i += size) {
      steps.push({ kind: 'batch', hosts: list.slice(i, i + size), canary });
    }
  };
  batches(canaries, true);
  if (canaries.length > 0 && rest.length > 0) {
    steps.push({ kind: 'canary-wait', ms: p.canaryWaitMs, canaries });
  }
  batches(rest, false);
  return steps;
}

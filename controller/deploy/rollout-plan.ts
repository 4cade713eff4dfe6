import {
  DEFAULT_CANARY_WAIT_MS,
  DEFAULT_UPDATE_BATCH_PERCENT,
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
}

/**
 * The options with their defaults for `kind` over `hosts` hosts: a deploy sends every host at
 * once, an update a quarter of them (at least one); halting on failure is on.
 */
export function rolloutPolicy(
  kind: 'deploy' | 'update',
  hosts: number,
  o: RolloutOptions = {},
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

import type { RolloutPolicy } from './rollout-plan.js';

/** The rollout's shape as an operation's log tells it. */
export function describePolicy(p: RolloutPolicy): string {
  const canary =
    p.canary > 0
      ? `${p.canary} canary hosts first, then a ${Math.round(p.canaryWaitMs / 1000)} s wait; `
      : '';
  const halt = p.haltOnFailure ? 'halts at the first failed host' : 'goes on past failed hosts';
  const gate =
    p.minHealthyMs !== null && p.minHealthyMs > 0
      ? `; a host succeeds once its services run ${Math.round(p.minHealthyMs / 100) / 10} s without a break`
      : '';
  const revert = p.autoRevert ? '; a failure puts the previous spec back' : '';
  return `rollout: ${canary}at most ${p.maxParallel} hosts at once; ${halt}${gate}${revert}`;
}

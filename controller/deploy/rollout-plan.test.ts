import { describe, expect, it } from 'vitest';
import { planRollout, rolloutPolicy, type RolloutStep } from './rollout-plan.js';

const hosts = (n: number): string[] => Array.from({ length: n }, (_, i) => `h${i + 1}`);

/** A plan as `[a,b] wait [c]`, for tables. */
function show(steps: readonly RolloutStep<string>[]): string {
  return steps
    .map((s) => (s.kind === 'batch' ? `${s.canary ? 'c' : ''}[${s.hosts.join(',')}]` : `wait${s.ms}`))
    .join(' ');
}

describe('rolloutPolicy', () => {
  it.each([
    [
      'deploy',
      8,
      {},
      {
        maxParallel: 8,
        canary: 0,
        canaryWaitMs: 30_000,
        haltOnFailure: true,
        minHealthyMs: 7,
        autoRevert: false,
      },
    ],
    [
      'deploy',
      0,
      {},
      {
        maxParallel: 1,
        canary: 0,
        canaryWaitMs: 30_000,
        haltOnFailure: true,
        minHealthyMs: 7,
        autoRevert: false,
      },
    ],
    [
      'deploy',
      2,
      { minHealthyMs: 0, autoRevert: true },
      {
        maxParallel: 2,
        canary: 0,
        canaryWaitMs: 30_000,
        haltOnFailure: true,
        minHealthyMs: 0,
        autoRevert: true,
      },
    ],
    [
      'update',
      8,
      {},
      {
        maxParallel: 2,
        canary: 0,
        canaryWaitMs: 30_000,
        haltOnFailure: true,
        minHealthyMs: null,
        autoRevert: false,
      },
    ],
    [
      'update',
      3,
      {},
      {
        maxParallel: 1,
        canary: 0,
        canaryWaitMs: 30_000,
        haltOnFailure: true,
        minHealthyMs: null,
        autoRevert: false,
      },
    ],
    [
      'update',
      5,
      {},
      {
        maxParallel: 2,
        canary: 0,
        canaryWaitMs: 30_000,
        haltOnFailure: true,
        minHealthyMs: null,
        autoRevert: false,
      },
    ],
    [
      'update',
      5,
      { maxParallel: 3, canary: 1, canaryWaitMs: 0, haltOnFailure: false, minHealthyMs: 5, autoRevert: true },
      {
        maxParallel: 3,
        canary: 1,
        canaryWaitMs: 0,
        haltOnFailure: false,
        minHealthyMs: null,
        autoRevert: false,
      },
    ],
  ] as const)('%s of %i hosts with %j', (kind, n, o, want) => {
    expect(rolloutPolicy(kind, n, o, 7)).toEqual(want);
  });
});

describe('planRollout', () => {
  const p = {
    maxParallel: 2,
    canary: 0,
    canaryWaitMs: 5,
    haltOnFailure: true,
    minHealthyMs: null,
    autoRevert: false,
  };
  it.each([
    ['no hosts', 0, p, ''],
    ['batches of two', 5, p, '[h1,h2] [h3,h4] [h5]'],
    ['all at once', 3, { ...p, maxParallel: 10 }, '[h1,h2,h3]'],
    ['one canary', 4, { ...p, canary: 1 }, 'c[h1] wait5 [h2,h3] [h4]'],
    ['canaries split by max-parallel', 5, { ...p, canary: 3 }, 'c[h1,h2] c[h3] wait5 [h4,h5]'],
    ['every host a canary: no wait', 2, { ...p, canary: 2 }, 'c[h1,h2]'],
    ['more canaries than hosts', 2, { ...p, canary: 9 }, 'c[h1,h2]'],
    ['one at a time', 3, { ...p, maxParallel: 1 }, '[h1] [h2] [h3]'],
  ])('%s', (_name, n, policy, want) => {
    const steps = planRollout(hosts(n), policy);
    expect(show(steps)).toBe(want);
    const sent = steps.flatMap((s) => (s.kind === 'batch' ? s.hosts : []));
    expect(sent).toEqual(hosts(n));
  });

  it('the wait names the canaries it watches', () => {
    const steps = planRollout(hosts(3), { ...p, canary: 1 });
    expect(steps[1]).toEqual({ kind: 'canary-wait', ms: 5, canaries: ['h1'] });
  });
});

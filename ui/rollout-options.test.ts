import { describe, expect, it } from 'vitest';
import { rolloutFromFlags } from '../cli/rollout-flags.js';
import {
  MAX_CANARY_WAIT_MS as PROTOCOL_MAX_WAIT_MS,
  MAX_MIN_HEALTHY_MS as PROTOCOL_MAX_HEALTHY_MS,
  RolloutOptions,
} from '../protocol/rollout.js';
import {
  MAX_CANARY_WAIT_MS,
  MAX_MIN_HEALTHY_MS,
  MAX_ROLLOUT_COUNT,
  rolloutFromFields,
} from './rollout-options.js';

const empty = { maxParallel: '', canary: '', canaryWaitSeconds: '', goOnPastFailures: false };

describe("the dashboard's rollout options are the CLI's", () => {
  it('has the limits of the protocol schema', () => {
    expect(MAX_CANARY_WAIT_MS).toBe(PROTOCOL_MAX_WAIT_MS);
    expect(RolloutOptions.properties.maxParallel.maximum).toBe(MAX_ROLLOUT_COUNT);
    expect(RolloutOptions.properties.canary.maximum).toBe(MAX_ROLLOUT_COUNT);
    expect(RolloutOptions.properties.canaryWaitMs.maximum).toBe(MAX_CANARY_WAIT_MS);
    expect(MAX_MIN_HEALTHY_MS).toBe(PROTOCOL_MAX_HEALTHY_MS);
    expect(RolloutOptions.properties.minHealthyMs.maximum).toBe(MAX_MIN_HEALTHY_MS);
  });

  it('sends what the CLI sends for the same values, and leaves out what is empty', () => {
    expect(rolloutFromFields(empty)).toEqual(rolloutFromFlags({}));
    expect(
      rolloutFromFields({ maxParallel: '3', canary: '1', canaryWaitSeconds: '5', goOnPastFailures: true }),
    ).toEqual(rolloutFromFlags({ maxParallel: '3', canary: '1', canaryWait: '5s', haltOnFailure: false }));
    expect(rolloutFromFields({ ...empty, canary: '0', canaryWaitSeconds: '0' })).toEqual(
      rolloutFromFlags({ canary: '0', canaryWait: '0' }),
    );
    expect(rolloutFromFields({ ...empty, canaryWaitSeconds: '86400' })).toEqual(
      rolloutFromFlags({ canaryWait: '24h' }),
    );
    expect(rolloutFromFields({ ...empty, minHealthySeconds: '2.5', autoRevert: true })).toEqual(
      rolloutFromFlags({ minHealthy: '2500ms', autoRevert: true }),
    );
    expect(rolloutFromFields({ ...empty, minHealthySeconds: '0' })).toEqual(
      rolloutFromFlags({ minHealthy: '0' }),
    );
  });

  it('refuses what the CLI refuses, naming the field', () => {
    for (const bad of ['0', '-1', '1.5', 'two', '10001']) {
      expect(() => rolloutFromFlags({ maxParallel: bad })).toThrow();
      expect(() => rolloutFromFields({ ...empty, maxParallel: bad })).toThrow(/Max parallel hosts/);
    }
    for (const bad of ['-1', '0.5', 'x', '10001']) {
      expect(() => rolloutFromFlags({ canary: bad })).toThrow();
      expect(() => rolloutFromFields({ ...empty, canary: bad })).toThrow(/Canary hosts/);
    }
    expect(() => rolloutFromFlags({ canaryWait: '25h' })).toThrow();
    for (const bad of ['86401', '-1', 'soon']) {
      expect(() => rolloutFromFields({ ...empty, canaryWaitSeconds: bad })).toThrow(/Canary wait/);
    }
    expect(() => rolloutFromFlags({ minHealthy: '61m' })).toThrow();
    for (const bad of ['3601', '-1', 'soon']) {
      expect(() => rolloutFromFields({ ...empty, minHealthySeconds: bad })).toThrow(/Min healthy/);
    }
  });
});

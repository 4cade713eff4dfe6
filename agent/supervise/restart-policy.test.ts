import { describe, expect, it } from 'vitest';
import { decideAfterExit, restartDelayMs, type ExitInfo, type RestartLimits } from './restart-policy.js';

const limits: RestartLimits = { maxRestarts: 5, windowMs: 600_000, baseDelayMs: 500, maxDelayMs: 30_000 };
const code = (c: number): ExitInfo => ({ known: true, code: c, signal: null });
const decide = (policy: 'always' | 'on-failure' | 'never', exit: ExitInfo, history: number[] = []) =>
  decideAfterExit({ policy, exit, history, now: 1_000_000, limits, random: () => 0.5 });

describe('restart policy', () => {
  it.each([
    ['always', code(0), 'restart'],
    ['always', code(1), 'restart'],
    ['on-failure', code(0), 'stop'],
    ['on-failure', code(1), 'restart'],
    ['on-failure', { known: false, code: null, signal: null }, 'restart'],
    ['on-failure', { known: true, code: null, signal: 'SIGKILL' }, 'restart'],
    ['never', code(0), 'stop'],
    ['never', code(1), 'fail'],
  ] as const)('%s after %j → %s', (policy, exit, action) => {
    expect(decide(policy, exit).action).toBe(action);
  });

  it('gives up after maxRestarts inside the window, with the reason', () => {
    const history = [1, 2, 3, 4, 5].map((i) => 1_000_000 - i * 1000);
    expect(decide('always', code(3), history)).toEqual({
      action: 'fail',
      reason: 'gave up after 5 restarts in 600 s; last: exited with code 3',
    });
  });

  it('forgets restarts older than the window', () => {
    const history = [1, 2, 3, 4, 5].map((i) => 1_000_000 - 600_000 - i);
    expect(decide('always', code(3), history).action).toBe('restart');
  });

  it('backs off exponentially with jitter, up to the cap', () => {
    expect([0, 1, 2, 3].map((n) => restartDelayMs(n, limits, () => 1))).toEqual([500, 1000, 2000, 4000]);
    expect([0, 1, 2, 3].map((n) => restartDelayMs(n, limits, () => 0))).toEqual([250, 500, 1000, 2000]);
    expect(restartDelayMs(20, limits, () => 1)).toBe(30_000);
  });

  it('describes why a process ended', () => {
    expect(decide('always', { known: true, code: null, signal: 'SIGSEGV' }).reason).toBe('killed by SIGSEGV');
    expect(decide('always', { known: false, code: null, signal: null }).reason).toContain('status unknown');
    expect(decide('always', { known: true, code: null, signal: null, error: 'spawn ENOENT' }).reason).toBe(
      'failed to start: spawn ENOENT',
    );
  });
});

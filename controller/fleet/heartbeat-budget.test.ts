import { describe, expect, it } from 'vitest';
import { MAX_WORKER_BODY_BYTES } from '../../protocol/constants.js';
import { checkHeartbeatBudget, createHeartbeatBudget, DEFAULT_HEARTBEAT_BUDGET } from './heartbeat-budget.js';

/** A clock the test moves by hand. */
function drivenClock(startMs = 1_700_000_000_000) {
  let nowMs = startMs;
  return { now: () => nowMs, advance: (ms: number) => (nowMs += ms) };
}

const limits = { perSecond: 2, burst: 4, bytesPerSecond: 100_000, burstBytes: MAX_WORKER_BODY_BYTES };

describe('per-host heartbeat budget', () => {
  it('admits a burst, then refuses with the wait until one more fits, taking nothing when it refuses', () => {
    const clock = drivenClock();
    const budget = createHeartbeatBudget(limits, clock);
    for (let i = 0; i < 4; i++) expect(budget.take('h1', 100)).toEqual({ ok: true });
    expect(budget.take('h1', 100)).toEqual({ ok: false, retryAfterMs: 500 });
    clock.advance(250);
    // Refusals take nothing: the wait shrinks with time alone.
    expect(budget.take('h1', 100)).toEqual({ ok: false, retryAfterMs: 250 });
    clock.advance(250);
    expect(budget.take('h1', 100)).toEqual({ ok: true });
    expect(budget.take('h1', 100).ok).toBe(false);
  });

  it('keeps hosts apart', () => {
    const budget = createHeartbeatBudget(limits, drivenClock());
    for (let i = 0; i < 4; i++) budget.take('h1', 1);
    expect(budget.take('h1', 1).ok).toBe(false);
    expect(budget.take('h2', 1).ok).toBe(true);
  });

  it('counts bytes: large heartbeats run out before the count does, and wait for the bytes', () => {
    const clock = drivenClock();
    const budget = createHeartbeatBudget(limits, clock);
    expect(budget.take('h1', MAX_WORKER_BODY_BYTES).ok).toBe(true);
    const refused = budget.take('h1', 50_000);
    expect(refused).toEqual({ ok: false, retryAfterMs: 500 });
    clock.advance(500);
    expect(budget.take('h1', 50_000).ok).toBe(true);
  });

  it('never refills beyond the burst, and a clock going backwards refills nothing', () => {
    const clock = drivenClock();
    const budget = createHeartbeatBudget(limits, clock);
    clock.advance(3_600_000);
    for (let i = 0; i < 4; i++) expect(budget.take('h1', 1).ok).toBe(true);
    expect(budget.take('h1', 1).ok).toBe(false);
    clock.advance(-60_000);
    expect(budget.take('h1', 1).ok).toBe(false);
  });

  it('admits everything when unlimited, and refuses limits that could never admit a heartbeat', () => {
    const budget = createHeartbeatBudget('unlimited', drivenClock());
    for (let i = 0; i < 1000; i++) expect(budget.take('h1', MAX_WORKER_BODY_BYTES).ok).toBe(true);
    expect(() => checkHeartbeatBudget(DEFAULT_HEARTBEAT_BUDGET)).not.toThrow();
    expect(() => checkHeartbeatBudget({ ...limits, burstBytes: MAX_WORKER_BODY_BYTES - 1 })).toThrow(
      /one largest heartbeat/,
    );
    expect(() => checkHeartbeatBudget({ ...limits, perSecond: 0 })).toThrow(RangeError);
    expect(() => checkHeartbeatBudget({ ...limits, burst: 0.5 })).toThrow(RangeError);
  });
});

import { describe, expect, it } from 'vitest';
import { executeRollout } from './rollout-executor.js';
import { planRollout } from './rollout-plan.js';

const hosts = ['h1', 'h2', 'h3', 'h4', 'h5'];

/** Runs the plan for `hosts` where the hosts in `bad` fail and those in `sick` fail the canary check. */
async function run(o: {
  canary: number;
  maxParallel: number;
  halt: boolean;
  bad?: string[];
  sick?: string[];
}) {
  const sent: string[][] = [];
  const result = await executeRollout({
    steps: planRollout(hosts, {
      maxParallel: o.maxParallel,
      canary: o.canary,
      canaryWaitMs: 0,
      haltOnFailure: o.halt,
      minHealthyMs: null,
      autoRevert: false,
    }),
    haltOnFailure: o.halt,
    sendBatch: (batch) => {
      sent.push([...batch]);
      return Promise.resolve(
        batch.map((h) =>
          o.bad?.includes(h) ? { ok: false, reason: `${h} broke` } : { ok: true, reason: null },
        ),
      );
    },
    checkCanaries: (canaries) =>
      Promise.resolve(new Map(canaries.filter((h) => o.sick?.includes(h)).map((h) => [h, 'crashed']))),
    signal: new AbortController().signal,
  });
  return { sent: sent.map((b) => b.join(',')), ...result };
}

describe('executeRollout', () => {
  it('sends every batch in order when nothing fails', async () => {
    const r = await run({ canary: 1, maxParallel: 2, halt: true });
    expect(r.sent).toEqual(['h1', 'h2,h3', 'h4,h5']);
    expect(r).toMatchObject({ halted: null, failed: [], untouched: [] });
  });

  it('halts after a failed canary: the rest untouched', async () => {
    const r = await run({ canary: 1, maxParallel: 2, halt: true, bad: ['h1'] });
    expect(r.sent).toEqual(['h1']);
    expect(r.halted).toEqual({ host: 'h1', reason: 'h1 broke' });
    expect(r.untouched).toEqual(['h2', 'h3', 'h4', 'h5']);
  });

  it('halts when a canary is sick after the wait', async () => {
    const r = await run({ canary: 2, maxParallel: 2, halt: true, sick: ['h2'] });
    expect(r.sent).toEqual(['h1,h2']);
    expect(r.halted).toEqual({ host: 'h2', reason: 'canary unhealthy after the wait: crashed' });
    expect(r.untouched).toEqual(['h3', 'h4', 'h5']);
  });

  it('halts after the batch of a failed host, the batch itself finished', async () => {
    const r = await run({ canary: 0, maxParallel: 2, halt: true, bad: ['h3'] });
    expect(r.sent).toEqual(['h1,h2', 'h3,h4']);
    expect(r.halted?.host).toBe('h3');
    expect(r.untouched).toEqual(['h5']);
  });

  it('a failure in the last batch ends it without a halt (nothing left to resume)', async () => {
    const r = await run({ canary: 0, maxParallel: 2, halt: true, bad: ['h5'] });
    expect(r.halted).toBeNull();
    expect(r.failed).toEqual([{ host: 'h5', reason: 'h5 broke' }]);
  });

  it('without halt-on-failure goes on and reports every failure', async () => {
    const r = await run({ canary: 1, maxParallel: 2, halt: false, bad: ['h1', 'h4'] });
    expect(r.sent).toEqual(['h1', 'h2,h3', 'h4,h5']);
    expect(r.halted).toBeNull();
    expect(r.failed.map((f) => f.host)).toEqual(['h1', 'h4']);
  });

  it('stops when its signal aborts', async () => {
    const ac = new AbortController();
    ac.abort();
    await expect(
      executeRollout({
        steps: planRollout(hosts, {
          maxParallel: 1,
          canary: 0,
          canaryWaitMs: 0,
          haltOnFailure: true,
          minHealthyMs: null,
          autoRevert: false,
        }),
        haltOnFailure: true,
        sendBatch: (b) => Promise.resolve(b.map(() => ({ ok: true, reason: null }))),
        signal: ac.signal,
      }),
    ).rejects.toThrow();
  });
});

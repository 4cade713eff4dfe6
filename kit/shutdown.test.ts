import { setTimeout as sleep } from 'node:timers/promises';
import { describe, expect, it } from 'vitest';
import { backoffDelayMs } from './backoff.js';
import { formatHostPort, parseHostPort } from './host-port.js';
import { listenForShutdown, runShutdown, waitForShutdown } from './shutdown.js';

describe('shutdown phases', () => {
  it('runs every phase in order even when one throws or overruns', async () => {
    const order: string[] = [];
    const outcomes = await runShutdown([
      { name: 'stop-accepting', run: async () => void order.push('a') },
      { name: 'abort-loops', run: async () => Promise.reject(new Error('x')) },
      { name: 'close-clients', timeoutMs: 20, run: () => new Promise<void>(() => order.push('c')) },
      { name: 'close-db', run: async () => void order.push('d') },
    ]);
    expect(order).toEqual(['a', 'c', 'd']);
    expect(outcomes.map((o) => [o.name, o.ok, o.timedOut ?? false])).toEqual([
      ['stop-accepting', true, false],
      ['abort-loops', false, false],
      ['close-clients', false, true],
      ['close-db', true, false],
    ]);
  });
});

describe('helpers', () => {
  it('backoff has full jitter under a cap', () => {
    expect(backoffDelayMs(0, 100, 1000, () => 0.999)).toBe(99);
    expect(backoffDelayMs(10, 100, 1000, () => 0.5)).toBe(500);
    expect(backoffDelayMs(3, 100, 1000, () => 0)).toBe(0);
  });

  it('parses and formats host:port, IPv6 included', () => {
    expect(parseHostPort('127.0.0.1:8771')).toEqual({ host: '127.0.0.1', port: 8771 });
    expect(parseHostPort('[::1]:0')).toEqual({ host: '::1', port: 0 });
    expect(formatHostPort('::1', 5)).toBe('[::1]:5');
    expect(() => parseHostPort('nope')).toThrow(/HOST:PORT/);
    expect(() => parseHostPort('a:99999')).toThrow();
  });
});

describe('waitForShutdown (real signals to this process)', () => {
  const handlers = (): number => process.listenerCount('SIGTERM');

  it('starts on the first signal, runs the phases, and removes its handlers', async () => {
    const before = handlers();
    const seen: string[] = [];
    const done = waitForShutdown(
      [
        { name: 'one', run: async () => void seen.push('one') },
        { name: 'two', run: async () => void seen.push('two') },
      ],
      { forceOnSecondSignal: true, onSignal: (s, n) => seen.push(`${s} ${n}`) },
    );
    expect(handlers()).toBe(before + 1);
    process.kill(process.pid, 'SIGTERM');
    const result = await done;
    expect(result).toMatchObject({ signal: 'SIGTERM', forcedBy: undefined });
    expect(result.outcomes.map((o) => [o.name, o.ok])).toEqual([
      ['one', true],
      ['two', true],
    ]);
    expect(seen).toEqual(['SIGTERM 1', 'one', 'two']);
    expect(handlers()).toBe(before);
  });

  it('a second signal ends the wait for a phase that hangs', async () => {
    let started: () => void = () => undefined;
    const phaseStarted = new Promise<void>((r) => (started = r));
    const done = waitForShutdown(
      [{ name: 'hangs', timeoutMs: 60_000, run: () => (started(), new Promise<void>(() => undefined)) }],
      { forceOnSecondSignal: true },
    );
    process.kill(process.pid, 'SIGINT');
    await phaseStarted;
    process.kill(process.pid, 'SIGTERM');
    expect(await done).toEqual({ signal: 'SIGINT', forcedBy: 'SIGTERM', outcomes: [] });
  });

  it('without forcing, a second signal is only reported; `until` starts it without a signal', async () => {
    const counts: number[] = [];
    let finish: () => void = () => undefined;
    const phaseDone = new Promise<void>((r) => (finish = r));
    let ended: () => void = () => undefined;
    const until = new Promise<void>((r) => (ended = r));
    const done = waitForShutdown(() => [{ name: 'slow', run: () => phaseDone }], {
      forceOnSecondSignal: false,
      until,
      onSignal: (_s, n) => counts.push(n),
    });
    ended();
    await sleep(10);
    process.kill(process.pid, 'SIGTERM');
    await sleep(10);
    process.kill(process.pid, 'SIGTERM');
    await sleep(10);
    finish();
    const result = await done;
    expect(result.signal).toBeUndefined();
    expect(result.forcedBy).toBeUndefined();
    expect(result.outcomes.map((o) => o.ok)).toEqual([true]);
    expect(counts).toEqual([1, 2]);
  });

  it('a signal that came before wait is kept: wait runs the phases at once; dispose lets go', async () => {
    const before = handlers();
    const early = listenForShutdown({ forceOnSecondSignal: true });
    expect(handlers()).toBe(before + 1);
    process.kill(process.pid, 'SIGTERM');
    await sleep(20);
    expect(early.signalled).toBe(true);
    const ran: string[] = [];
    const result = await early.wait([{ name: 'late', run: async () => void ran.push('late') }]);
    expect(result).toMatchObject({ signal: 'SIGTERM', forcedBy: undefined });
    expect(ran).toEqual(['late']);
    expect(handlers()).toBe(before);

    const failedStart = listenForShutdown({ forceOnSecondSignal: true });
    expect(failedStart.signalled).toBe(false);
    failedStart.dispose();
    failedStart.dispose();
    expect(handlers()).toBe(before);
  });
});

import { describe, expect, it } from 'vitest';
import { backoffDelayMs } from './backoff.js';
import { formatHostPort, parseHostPort } from './host-port.js';
import { runShutdown } from './shutdown.js';

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

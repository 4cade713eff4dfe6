import { describe, expect, it } from 'vitest';
import { pino } from 'pino';
import { CLOCK_OFFSET_WARN_MS } from '../../protocol/host.js';
import { createClockOffsets, estimateOffsetMs } from './clock-offsets.js';

describe('clock offsets', () => {
  it('estimates agent − controller, correcting by half the previous round trip', () => {
    const received = Date.parse('2026-01-01T12:00:00.000Z');
    expect(estimateOffsetMs({ sentAt: '2026-01-01T11:50:00.000Z' }, received)).toBe(-600_000);
    expect(estimateOffsetMs({ sentAt: '2026-01-01T12:50:00.000Z', lastRoundTripMs: 400 }, received)).toBe(
      3_000_200,
    );
    expect(estimateOffsetMs({ sentAt: 'not a time' }, received)).toBeUndefined();
  });

  it('warns past the bound and logs once per crossing', () => {
    const lines: { msg: string; offsetMs?: number }[] = [];
    const log = pino({ level: 'info' }, { write: (l: string) => void lines.push(JSON.parse(l)) });
    const clocks = createClockOffsets(log);
    const host = { hostId: 'h-1', hostName: 'web-1' };
    const at = Date.parse('2026-01-01T12:00:00.000Z');
    clocks.record(host, undefined, at);
    expect(clocks.get('h-1')).toBeUndefined();
    clocks.record(host, { sentAt: '2026-01-01T12:00:30.000Z' }, at);
    expect(clocks.get('h-1')).toEqual({
      offsetMs: 30_000,
      measuredAt: '2026-01-01T12:00:00.000Z',
      warning: false,
      warnAfterMs: CLOCK_OFFSET_WARN_MS,
    });
    clocks.record(host, { sentAt: '2026-01-01T11:10:00.000Z' }, at);
    clocks.record(host, { sentAt: '2026-01-01T11:10:00.000Z' }, at);
    expect(clocks.get('h-1')).toMatchObject({ offsetMs: -3_000_000, warning: true });
    clocks.record(host, { sentAt: '2026-01-01T12:00:00.000Z' }, at);
    expect(lines.map((l) => l.msg)).toEqual([
      'host clock is off; fix its time sync',
      'host clock is back within bounds',
    ]);
    clocks.forget('h-1');
    expect(clocks.get('h-1')).toBeUndefined();
  });
});

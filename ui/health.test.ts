import { describe, expect, it } from 'vitest';
import { healthOf } from './health.js';

const disk = (usedFraction: number) => ({ diskTotalBytes: 100, diskFreeBytes: 100 - usedFraction * 100 });

describe('the fleet page health dot', () => {
  it.each([
    [{ status: 'online', metrics: disk(0.5), services: ['running'] }, 'green', 'online'],
    [{ status: 'pending', metrics: null, services: [] }, 'grey', 'never seen'],
    [{ status: 'stale', metrics: disk(0.1), services: [] }, 'yellow', 'stale'],
    [{ status: 'online', metrics: disk(0.85), services: [] }, 'yellow', 'disk 85% full'],
    [
      { status: 'online', metrics: disk(0.5), services: ['running', 'degraded'] },
      'yellow',
      '1 service degraded',
    ],
    [{ status: 'offline', metrics: disk(0.1), services: ['running'] }, 'red', 'offline'],
    [{ status: 'online', metrics: disk(0.95), services: [] }, 'red', 'disk 95% full'],
    [{ status: 'online', metrics: disk(0.1), services: ['failed', 'escalated'] }, 'red', '2 services failed'],
  ])('%j is %s (%s)', (input, health, reason) => {
    expect(healthOf(input)).toEqual({ health, reason });
  });
});

import { describe, expect, it } from 'vitest';
import { deriveHostStatus } from './host-status.js';

describe('host status from heartbeat age', () => {
  const interval = 30_000;
  const now = 1_000_000_000;
  it.each([
    [null, false, 'pending'],
    [now, false, 'online'],
    [now - 59_999, false, 'online'],
    [now - 60_000, false, 'stale'],
    [now - 89_999, false, 'stale'],
    [now - 90_000, false, 'offline'],
    [now - 10 * 86_400_000, false, 'offline'],
    [now, true, 'decommissioned'],
    [null, true, 'decommissioned'],
  ] as const)('last seen %s, decommissioned %s → %s', (lastSeenMs, decommissioned, status) => {
    expect(deriveHostStatus({ lastSeenMs, decommissioned }, now, interval)).toBe(status);
  });
});

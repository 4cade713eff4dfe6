import { describe, expect, it } from 'vitest';
import { retryAfterMs } from './controller-client.js';

describe('Retry-After from the controller', () => {
  const now = Date.parse('2026-01-01T00:00:00Z');
  it('reads whole seconds and HTTP dates, capped at ten minutes, never negative', () => {
    expect(retryAfterMs('3', now)).toBe(3000);
    expect(retryAfterMs(['2', '9'], now)).toBe(2000);
    expect(retryAfterMs('Thu, 01 Jan 2026 00:00:07 GMT', now)).toBe(7000);
    expect(retryAfterMs('Wed, 31 Dec 2025 23:59:00 GMT', now)).toBe(0);
    expect(retryAfterMs('999999', now)).toBe(600_000);
  });

  it('ignores what it cannot read', () => {
    expect(retryAfterMs(undefined, now)).toBeUndefined();
    expect(retryAfterMs('soon', now)).toBeUndefined();
    expect(retryAfterMs('-1', now)).toBeUndefined();
  });
});

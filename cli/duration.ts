import { CorralError, ErrorCode } from '../protocol/errors.js';

const UNITS_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/** Parses `15m`, `30s`, `200ms`, `2h`, `1d` (a bare number is seconds) into milliseconds. */
export function parseDurationMs(text: string): number {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m|h|d)?$/.exec(text.trim());
  const value = m ? Number(m[1]) * (UNITS_MS[m[2] ?? 's'] ?? 1000) : Number.NaN;
  if (!Number.isFinite(value) || value <= 0) {
    throw new CorralError(
      ErrorCode.VALIDATION,
      `expected a duration like 30s, 15m or 200ms, got ${JSON.stringify(text)}`,
    );
  }
  return Math.round(value);
}

/** As `parseDurationMs`, and `0` (with or without a unit) is zero: a setting turned off. */
export function parseDurationOrZeroMs(text: string): number {
  return /^0+(?:\.0+)?(ms|s|m|h|d)?$/.test(text.trim()) ? 0 : parseDurationMs(text);
}

import { describe, expect, it } from 'vitest';
import { canonicalJson } from './canonical-json.js';

describe('canonical JSON (RFC 8785)', () => {
  it('sorts members by UTF-16 code units, not by code point or locale', () => {
    // U+FF61 sorts after U+1F600 by code point, but before it as UTF-16 (0xD83D < 0xFF61).
    expect(canonicalJson({ '\uff61': 1, '😀': 2, é: 3, e: 4, E: 5, '10': 6, '9': 7 })).toBe(
      '{"10":6,"9":7,"E":5,"e":4,"é":3,"😀":2,"｡":1}',
    );
  });

  it('writes numbers in their shortest round-trip form', () => {
    expect(canonicalJson([0, -0, 1e21, 1e-7, 0.1, 123.456, 5e-324, -1.5e300])).toBe(
      '[0,0,1e+21,1e-7,0.1,123.456,5e-324,-1.5e+300]',
    );
  });

  it('escapes only what JSON must, and control characters as \\u00xx', () => {
    expect(canonicalJson('"\\\u0000\u001f\b\t\n\f\r/\u2028é')).toBe(
      '"\\"\\\\\\u0000\\u001f\\b\\t\\n\\f\\r/\u2028é"',
    );
  });

  it('refuses what is not JSON', () => {
    expect(() => canonicalJson({ n: Number.NaN })).toThrow(TypeError);
    expect(() => canonicalJson([Infinity])).toThrow(TypeError);
    expect(() => canonicalJson([undefined])).toThrow(TypeError);
    expect(() => canonicalJson(10n)).toThrow(TypeError);
    expect(() => canonicalJson({ f: () => 1 })).toThrow(TypeError);
    expect(canonicalJson({ a: undefined, b: 1 })).toBe('{"b":1}');
  });
});

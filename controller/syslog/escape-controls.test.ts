import { describe, expect, it } from 'vitest';
import { escapeControls, needsEscape } from './escape-controls.js';

const bytes = (...parts: (string | number[])[]): Buffer =>
  Buffer.concat(parts.map((p) => (typeof p === 'string' ? Buffer.from(p, 'utf8') : Buffer.from(p))));

const CASES: [string, Buffer, Buffer][] = [
  ['plain text stays', bytes('hello world'), bytes('hello world')],
  ['TAB stays', bytes('a\tb'), bytes('a\tb')],
  ['CR', bytes('a\rb'), bytes('a#015b')],
  ['NUL', bytes([0x00]), bytes('#000')],
  ['ESC of a colour code', bytes('\x1b[31mred\x1b[0m'), bytes('#033[31mred#033[0m')],
  ['BEL, BS, VT, FF and US', bytes([0x07, 0x08, 0x0b, 0x0c, 0x1f]), bytes('#007#010#013#014#037')],
  ['DEL', bytes('a\x7fb'), bytes('a#177b')],
  ['a C1 control in UTF-8 (CSI, U+009B)', bytes('x', [0xc2, 0x9b], '2J'), bytes('x#302#2332J')],
  [
    'UTF-8 text around it stays (é ü © NBSP)',
    bytes('é ü ©', [0xc2, 0xa0], '.'),
    bytes('é ü ©', [0xc2, 0xa0], '.'),
  ],
  ['bytes that are not UTF-8 stay', bytes([0xff, 0x9b, 0x80]), bytes([0xff, 0x9b, 0x80])],
];

describe('escapeControls', () => {
  for (const [name, input, expected] of CASES) {
    it(name, () => {
      const out = escapeControls(input, false);
      expect(out.toString('latin1')).toBe(expected.toString('latin1'));
      expect(needsEscape(input, false)).toBe(!expected.equals(input));
    });
  }

  it('keeps LF (a line end) unless told, then writes it #012', () => {
    expect(escapeControls(bytes('a\nb\n'), false).toString()).toBe('a\nb\n');
    expect(needsEscape(bytes('a\nb'), false)).toBe(false);
    expect(needsEscape(bytes('a\nb'), true)).toBe(true);
    expect(escapeControls(bytes('a\nb'), true).toString()).toBe('a#012b');
  });

  it('escapes every C0 byte but TAB and LF, and only those below 0x20 besides DEL', () => {
    for (let b = 0; b < 0x100; b++) {
      const out = escapeControls(Buffer.from([b]), false).toString('latin1');
      const escaped = (b < 0x20 && b !== 0x09 && b !== 0x0a) || b === 0x7f;
      expect(out, `byte ${b}`).toBe(escaped ? `#${b.toString(8).padStart(3, '0')}` : String.fromCharCode(b));
    }
  });
});

import { describe, expect, it } from 'vitest';
import { renderJson, renderRecord, renderTable, terminalOutput } from './output.js';
import { displayWidth, MAX_COMBINING_RUN, terminalText } from './terminal-text.js';

/** Bytes a terminal could act on: C0 but LF/TAB, DEL, C1, bidi/format, U+2028/9. */
const ACTIONABLE =
  // eslint-disable-next-line no-control-regex -- matching control characters is the point
  /[\u0000-\u0008\u000b-\u001f\u007f-\u009f\u00ad\u061c\u200b-\u200f\u2028-\u202e\u2060-\u206f\ufeff]/;

const CASES: readonly (readonly [name: string, input: string, shown: string])[] = [
  ['ESC', 'a\u001bb', 'a\\x1bb'],
  ['BEL', 'ding\u0007', 'ding\\x07'],
  ['CSI clear screen', '\u001b[2J\u001b[H', '\\x1b[2J\\x1b[H'],
  ['OSC 52 clipboard write', '\u001b]52;c;cm0gLXJmIH4=\u0007', '\\x1b]52;c;cm0gLXJmIH4=\\x07'],
  ['OSC 0 window title (ST end)', '\u001b]0;pwned\u001b\\', '\\x1b]0;pwned\\x1b\\'],
  ['C1 CSI (8-bit)', '\u009b31mred', '\\x9b31mred'],
  ['C1 OSC (8-bit)', '\u009d0;t\u009c', '\\x9d0;t\\x9c'],
  ['CR overwrite', 'ok\rFAKE', 'ok\\rFAKE'],
  ['LF fake row', 'one\nweb-9  online', 'one\\nweb-9  online'],
  ['TAB', 'a\tb', 'a\\tb'],
  ['NUL and DEL', 'a\u0000b\u007f', 'a\\x00b\\x7f'],
  ['bidi override', 'abc\u202edcba', 'abc\\u{202e}dcba'],
  ['bidi isolate', '\u2066x\u2069', '\\u{2066}x\\u{2069}'],
  ['zero width', 'a\u200bb\u200dc', 'a\\u{200b}b\\u{200d}c'],
  ['line/paragraph separator', 'a\u2028b\u2029c', 'a\\u{2028}b\\u{2029}c'],
  ['lone surrogate', 'a\ud800b', 'a\\u{d800}b'],
  ['plain text and accents stay', 'café naïve 日本', 'café naïve 日本'],
];

describe('terminal-safe text', () => {
  for (const [name, input, shown] of CASES) {
    it(`shows ${name} escaped`, () => {
      const out = terminalText(input);
      expect(out).toBe(shown);
      expect(out).not.toMatch(ACTIONABLE);
      expect(terminalText(out)).toBe(out);
    });
  }

  it('keeps LF and TAB only where asked, and still escapes CR', () => {
    expect(terminalText('a\tb\nc\r', { keepNewlines: true, keepTabs: true })).toBe('a\tb\nc\\r');
    // Lines of output with nothing else to escape come back as given (the fast path).
    const lines = 'café\tnaïve\n日本\n';
    expect(terminalText(lines, { keepNewlines: true, keepTabs: true })).toBe(lines);
    // Whatever is kept, every other character is still escaped, LF and TAB themselves included.
    for (const [CASE, input, shown] of CASES.filter(([name]) => name !== 'LF fake row' && name !== 'TAB')) {
      for (const options of [
        { keepNewlines: true },
        { keepTabs: true },
        { keepNewlines: true, keepTabs: true },
      ]) {
        expect(terminalText(`x\n\t${input}`, options), CASE).toBe(
          `x${options.keepNewlines ? '\n' : '\\n'}${options.keepTabs ? '\t' : '\\t'}${shown}`,
        );
      }
    }
  });

  it('bounds stacked combining marks on one character', () => {
    const zalgo = `e${'\u0301'.repeat(50)}x`;
    const out = terminalText(zalgo);
    expect(out.startsWith(`e${'\u0301'.repeat(MAX_COMBINING_RUN)}\\u{301}`)).toBe(true);
    expect(out.endsWith('x')).toBe(true);
    expect(displayWidth(terminalText(`e${'\u0301'.repeat(MAX_COMBINING_RUN)}`))).toBe(1);
  });

  it('counts wide characters as two columns and bounds length in columns', () => {
    expect(displayWidth('日本語')).toBe(6);
    expect(displayWidth('😀a')).toBe(3);
    const cut = terminalText('日本語'.repeat(100), { maxColumns: 11 });
    expect(cut).toBe('日本語日本…');
    expect(displayWidth(cut)).toBeLessThanOrEqual(11);
    const ascii = terminalText('x'.repeat(10_000), { maxColumns: 20 });
    expect(ascii).toBe(`${'x'.repeat(19)}…`);
    // An escape is never cut in half.
    expect(terminalText('ab\u001bcd', { maxColumns: 5 })).toBe('ab…');
  });

  it('keeps table columns aligned with escaped, wide and long cells', () => {
    const table = renderTable(
      ['name', 'error', 'n'],
      [
        ['a', '\u001b[31mred\u001b[0m', 1],
        ['日本', 'x'.repeat(500), 2],
        ['b', 'tab\there', 3],
      ],
    );
    const lines = table.trimEnd().split('\n');
    expect(lines).toHaveLength(4);
    const col = (l: string) => displayWidth(l.slice(0, l.lastIndexOf(' ') + 1));
    expect(new Set(lines.map(col)).size).toBe(1);
    expect(table).not.toMatch(ACTIONABLE);
    expect(table).toContain('\\x1b[31mred\\x1b[0m');
    expect(table).toContain('…');
  });

  it('renders records one safe line per value', () => {
    const text = renderRecord([
      ['version', '1.0\u001b]0;x\u0007'],
      ['error', 'l1\nl2'],
    ]);
    expect(text).toBe('version  1.0\\x1b]0;x\\x07\nerror    l1\\nl2\n');
  });

  it('escapes in JSON what JSON.stringify leaves raw (DEL, C1, bidi, U+2028/9), same value back', () => {
    const value = {
      all: '\u001b[2J\u0007\r\n\u007f\u0085\u009b\u202e\u2028\u2029\u200b\ufeff',
      zalgo: `e${'\u0301'.repeat(10)}`,
      ok: 'café 日本',
    };
    const json = renderJson(value);
    expect(json).not.toMatch(ACTIONABLE);
    expect(json).toContain('\\u009b');
    expect(json).toContain('\\u2028');
    expect(json).toContain('\\u202e');
    expect(json).toContain('café 日本');
    expect(JSON.parse(json)).toEqual(value);
  });

  it('guards every write of a command, and leaves JSON output byte for byte as it is', () => {
    const raw: string[] = [];
    const io = terminalOutput({ out: (s) => raw.push(s), err: (s) => raw.push(s) });
    expect(terminalOutput(io)).toBe(io);
    io.err('corral: agent said \u001b]52;c;AAAA\u0007\n');
    const json = renderJson({ e: '\u009b\u202e\u0000', z: `a${'\u0300'.repeat(9)}` });
    io.out(json);
    io.clearScreen?.();
    expect(raw).toEqual(['corral: agent said \\x1b]52;c;AAAA\\x07\n', json, '\u001b[H\u001b[2J']);
  });
});

/**
 * Text made safe for a terminal. Much of what the CLI shows came from workers (agent versions,
 * service errors, event details, log lines), and a compromised worker can send anything its
 * schema lets through. Written raw, escape sequences could fake or hide table rows, retitle
 * the window or write the clipboard (OSC 52), so every character a terminal might act on is
 * shown escaped instead:
 *
 * - C0 controls, DEL and C1 controls (U+0080–U+009F, which some terminals obey as 8-bit
 *   CSI/OSC): `\x1b`, `\x9b`; LF, CR and TAB as `\n`, `\r`, `\t` (LF and TAB are kept where the
 *   caller says so: between lines of output);
 * - format characters (bidi overrides and isolates such as U+202E, zero-width characters,
 *   soft hyphen, BOM), line and paragraph separators (U+2028/9) and lone surrogates:
 *   `\u{202e}`;
 * - combining marks past the first MAX_COMBINING_RUN on one character (text stacked to
 *   cover the rows around it): `\u{301}`.
 *
 * Backslashes are not doubled: a worker can send the text `\x1b`, which then looks like an
 * escaped ESC and is equally harmless. Escaping is idempotent: escaped text has nothing left
 * to escape. Widths count wide (East Asian, emoji) characters as two columns and combining
 * marks as none, so tables stay aligned on common terminals; length bounds are in columns.
 */

/** Combining marks kept on one base character; the rest are shown escaped. */
export const MAX_COMBINING_RUN = 4;
const ELLIPSIS = '…';

/** Printable ASCII only: nothing to escape, one column per character. */
const PLAIN_ASCII = /^[\x20-\x7e]*$/;
/**
 * Anything that may need escaping, one pattern per choice of what the call keeps (LF, TAB):
 * text with none of it, and no width bound, comes back as it is. Whole lines of output (a
 * page of JSON or of a table, megabytes at a large fleet) take this path, not the loop below.
 */
/* eslint-disable no-control-regex -- matching control characters is the point */
const MAYBE_UNSAFE = /[\x00-\x1f\x7f-\x9f\p{Cf}\p{Zl}\p{Zp}\p{Cs}\p{M}]/u;
const MAYBE_UNSAFE_KEEP_LF = /[\x00-\x09\x0b-\x1f\x7f-\x9f\p{Cf}\p{Zl}\p{Zp}\p{Cs}\p{M}]/u;
const MAYBE_UNSAFE_KEEP_TAB = /[\x00-\x08\x0a-\x1f\x7f-\x9f\p{Cf}\p{Zl}\p{Zp}\p{Cs}\p{M}]/u;
const MAYBE_UNSAFE_KEEP_LF_TAB = /[\x00-\x08\x0b-\x1f\x7f-\x9f\p{Cf}\p{Zl}\p{Zp}\p{Cs}\p{M}]/u;
/* eslint-enable no-control-regex */

function maybeUnsafe(options: TerminalTextOptions): RegExp {
  if (options.keepNewlines) return options.keepTabs ? MAYBE_UNSAFE_KEEP_LF_TAB : MAYBE_UNSAFE_KEEP_LF;
  return options.keepTabs ? MAYBE_UNSAFE_KEEP_TAB : MAYBE_UNSAFE;
}
const ALWAYS_ESCAPED = /^[\p{Cf}\p{Zl}\p{Zp}\p{Cs}]$/u;
const COMBINING = /^\p{M}$/u;
const ZERO_WIDTH = /^[\p{Mn}\p{Me}]$/u;
const EMOJI_WIDE = /^\p{Emoji_Presentation}$/u;

/** East Asian Wide and Fullwidth blocks (code point ranges, inclusive), two columns each. */
const WIDE_RANGES: readonly (readonly [number, number])[] = [
  [0x1100, 0x115f],
  [0x2e80, 0x303e],
  [0x3041, 0x33ff],
  [0x3400, 0x4dbf],
  [0x4e00, 0x9fff],
  [0xa000, 0xa4cf],
  [0xa960, 0xa97f],
  [0xac00, 0xd7a3],
  [0xf900, 0xfaff],
  [0xfe10, 0xfe19],
  [0xfe30, 0xfe6f],
  [0xff00, 0xff60],
  [0xffe0, 0xffe6],
  [0x16fe0, 0x18cff],
  [0x1b000, 0x1b2ff],
  [0x20000, 0x3fffd],
];

export interface TerminalTextOptions {
  /** Keep LF as is (text of several lines); otherwise it is shown as `\n`. */
  readonly keepNewlines?: boolean;
  /** Keep TAB as is; otherwise it is shown as `\t`. */
  readonly keepTabs?: boolean;
  /** At most this many columns; longer text is cut and ends in `…`. */
  readonly maxColumns?: number;
}

const NAMED: Readonly<Record<number, string>> = { 0x09: '\\t', 0x0a: '\\n', 0x0d: '\\r' };

const hex2 = (cp: number): string => `\\x${cp.toString(16).padStart(2, '0')}`;
const braced = (cp: number): string => `\\u{${cp.toString(16)}}`;

/** Columns one (unescaped, printable) character takes. */
function charWidth(ch: string, cp: number): number {
  if (cp < 0x7f) return 1;
  if (ZERO_WIDTH.test(ch)) return 0;
  for (const [lo, hi] of WIDE_RANGES) {
    if (cp < lo) break;
    if (cp <= hi) return 2;
  }
  return cp >= 0x2300 && EMOJI_WIDE.test(ch) ? 2 : 1;
}

/**
 * `text` as a terminal may show it: see the module comment for what is escaped. With
 * `maxColumns`, the result is at most that wide.
 */
export function terminalText(text: string, options: TerminalTextOptions = {}): string {
  const max = options.maxColumns;
  if (PLAIN_ASCII.test(text) || (max === undefined && !maybeUnsafe(options).test(text))) {
    return max === undefined || text.length <= max ? text : truncate(text, max);
  }
  const parts: string[] = [];
  const widths: number[] = [];
  let combining = 0;
  for (const ch of text) {
    const cp = ch.codePointAt(0) ?? 0;
    let piece: string;
    let width: number;
    if (cp < 0x20 || (cp >= 0x7f && cp <= 0x9f)) {
      const kept = (cp === 0x0a && options.keepNewlines) || (cp === 0x09 && options.keepTabs);
      piece = kept ? ch : (NAMED[cp] ?? hex2(cp));
      width = kept ? (cp === 0x09 ? 1 : 0) : piece.length;
      combining = 0;
    } else if (ALWAYS_ESCAPED.test(ch)) {
      piece = braced(cp);
      width = piece.length;
      combining = 0;
    } else if (COMBINING.test(ch)) {
      combining++;
      piece = combining > MAX_COMBINING_RUN ? braced(cp) : ch;
      width = piece === ch ? charWidth(ch, cp) : piece.length;
    } else {
      piece = ch;
      width = charWidth(ch, cp);
      combining = 0;
    }
    parts.push(piece);
    widths.push(width);
  }
  const all = parts.join('');
  if (max === undefined) return all;
  let total = 0;
  for (const w of widths) total += w;
  if (total <= max) return all;
  // Cut whole pieces (never half an escape) so the text and the ellipsis fit in `max`.
  let used = 0;
  let kept = '';
  for (let i = 0; i < parts.length; i++) {
    const w = widths[i] ?? 0;
    if (used + w > max - 1) break;
    used += w;
    kept += parts[i] ?? '';
  }
  return kept + ELLIPSIS;
}

function truncate(plain: string, max: number): string {
  return max <= 0 ? '' : `${plain.slice(0, Math.max(0, max - 1))}${ELLIPSIS}`;
}

/** Columns that text made by `terminalText` takes on a terminal (one line of it). */
export function displayWidth(safe: string): number {
  if (PLAIN_ASCII.test(safe)) return safe.length;
  let total = 0;
  for (const ch of safe) total += charWidth(ch, ch.codePointAt(0) ?? 0);
  return total;
}

/** Pads safe text with spaces to `columns` wide. */
export function padColumns(safe: string, columns: number): string {
  const width = displayWidth(safe);
  return width >= columns ? safe : safe + ' '.repeat(columns - width);
}

const JSON_UNSAFE = /[\x7f-\x9f\p{Cf}\p{Zl}\p{Zp}]|\p{M}+/gu;
const STARTS_COMBINING = /^\p{M}/u;
const jsonEscape = (s: string): string =>
  Array.from(s, (ch) => {
    let out = '';
    for (let i = 0; i < ch.length; i++) out += `\\u${ch.charCodeAt(i).toString(16).padStart(4, '0')}`;
    return out;
  }).join('');

/**
 * JSON text (from JSON.stringify) with what `terminalText` would escape written as JSON
 * `\uXXXX` escapes instead, so it reads back as the same value and writing it to a terminal
 * changes nothing. JSON.stringify already escapes C0 controls and lone surrogates; this adds
 * DEL, C1, format characters, U+2028/9 and combining runs past MAX_COMBINING_RUN.
 */
export function terminalSafeJson(json: string): string {
  return json.replace(JSON_UNSAFE, (m) => {
    if (!STARTS_COMBINING.test(m)) return jsonEscape(m);
    const marks = Array.from(m);
    if (marks.length <= MAX_COMBINING_RUN) return m;
    return marks.slice(0, MAX_COMBINING_RUN).join('') + jsonEscape(marks.slice(MAX_COMBINING_RUN).join(''));
  });
}

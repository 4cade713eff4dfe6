const LF = 0x0a;
const TAB = 0x09;
const DEL = 0x7f;
/** Lead byte of the UTF-8 encodings of U+0080..U+00BF; U+0080..U+009F are the C1 controls. */
const C2 = 0xc2;
const HASH = 0x23;

/** Bytes that are escaped wherever they appear (LF is the caller's choice; C2 only before a C1). */
const ALWAYS: readonly number[] = [
  ...Array.from({ length: 0x20 }, (_, b) => b).filter((b) => b !== TAB && b !== LF),
  DEL,
];

const isC1Continuation = (b: number | undefined): boolean => b !== undefined && b >= 0x80 && b <= 0x9f;

/**
 * True when `line` holds a byte a terminal would act on: a C0 control other than TAB (and LF,
 * unless `lineFeeds`), DEL, or a C1 control encoded as UTF-8 (C2 80..C2 9F). Uses one native
 * search per byte value, so the common case (none) costs a few memchr passes, not a JS loop.
 */
export function needsEscape(line: Buffer, lineFeeds: boolean): boolean {
  for (const b of ALWAYS) if (line.indexOf(b) !== -1) return true;
  if (lineFeeds && line.indexOf(LF) !== -1) return true;
  for (let i = line.indexOf(C2); i !== -1; i = line.indexOf(C2, i + 1)) {
    if (isC1Continuation(line[i + 1])) return true;
  }
  return false;
}

function escapes(b: number, lineFeeds: boolean): boolean {
  if (b < 0x20) return b !== TAB && (b !== LF || lineFeeds);
  return b === DEL;
}

/**
 * `line` with every byte `needsEscape` looks for written as `#` and three octal digits, the
 * way rsyslog escapes control characters (`#000` NUL, `#012` LF, `#015` CR, `#033` ESC, `#177`
 * DEL, and a C1 control as its two UTF-8 bytes, `#302#233` for U+009B). TAB, printable bytes
 * and every other byte (UTF-8 text, or bytes that are not UTF-8) stay as they are. An existing
 * `#` is not escaped, so (as with rsyslog) the escape is for display, not reversible.
 */
export function escapeControls(line: Buffer, lineFeeds: boolean): Buffer {
  let extra = 0;
  for (let i = 0; i < line.length; i++) {
    const b = line[i] as number;
    if (escapes(b, lineFeeds)) extra += 3;
    else if (b === C2 && isC1Continuation(line[i + 1])) {
      extra += 6;
      i++;
    }
  }
  if (extra === 0) return line;
  const out = Buffer.allocUnsafe(line.length + extra);
  let o = 0;
  const put = (b: number): void => {
    out[o++] = HASH;
    out[o++] = 0x30 + (b >> 6);
    out[o++] = 0x30 + ((b >> 3) & 7);
    out[o++] = 0x30 + (b & 7);
  };
  for (let i = 0; i < line.length; i++) {
    const b = line[i] as number;
    if (escapes(b, lineFeeds)) put(b);
    else if (b === C2 && isC1Continuation(line[i + 1])) {
      put(b);
      put(line[++i] as number);
    } else out[o++] = b;
  }
  return out;
}

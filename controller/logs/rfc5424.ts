/** The parts of a stored RFC 5424 line a reader shows. */
export interface ParsedLine {
  /** Milliseconds since the epoch; undefined for NILVALUE or a timestamp that does not parse. */
  readonly tsMs: number | undefined;
  readonly appName: string | undefined;
  readonly message: string;
}

/** Index just past the structured data starting at `at` (`-` or `[…]…`), or -1 when malformed. */
function skipStructuredData(line: string, at: number): number {
  if (line[at] === '-') return at + 1;
  let i = at;
  while (line[i] === '[') {
    i++;
    let quoted = false;
    for (;;) {
      const c = line[i];
      if (c === undefined) return -1;
      if (quoted && c === '\\') i += 2;
      else {
        if (c === '"') quoted = !quoted;
        else if (c === ']' && !quoted) break;
        i++;
      }
    }
    i++;
  }
  return i === at ? -1 : i;
}

/**
 * Parses `<PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID SD [MSG]`. The HOSTNAME a line
 * claims is ignored (provenance is the sending certificate). A line that is not RFC 5424 is
 * all message, with no timestamp or app-name.
 */
export function parseRfc5424(line: string): ParsedLine {
  const m = /^<\d{1,3}>1 (\S+) \S+ (\S+) \S+ \S+ /.exec(line);
  if (!m) return { tsMs: undefined, appName: undefined, message: line };
  const sdEnd = skipStructuredData(line, m[0].length);
  if (sdEnd < 0) return { tsMs: undefined, appName: undefined, message: line };
  let message = line.slice(line[sdEnd] === ' ' ? sdEnd + 1 : sdEnd);
  if (message.startsWith('\ufeff')) message = message.slice(1);
  const ts = m[1] === '-' ? Number.NaN : Date.parse(m[1] as string);
  return {
    tsMs: Number.isFinite(ts) ? ts : undefined,
    appName: m[2] === '-' ? undefined : m[2],
    message,
  };
}

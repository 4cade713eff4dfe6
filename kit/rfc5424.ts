/**
 * RFC 5424 lines for the worker log: `<PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID - MSG`.
 * The forwarder ships these lines as they are, so every header field is kept within the
 * RFC's character set and length.
 */
export const SEVERITY = { err: 3, warning: 4, notice: 5, info: 6 } as const;
export type Severity = keyof typeof SEVERITY;

/** Facility 1 (user-level), as for any ordinary program's output. */
const FACILITY_USER = 1;
/** Longest MSG written, in bytes; longer lines are cut (and say so). */
export const MAX_MESSAGE_BYTES = 8192;

export interface SyslogRecord {
  readonly time: Date;
  readonly hostname: string;
  readonly appName: string;
  readonly procId?: number | string | undefined;
  readonly msgId?: string;
  readonly severity: Severity;
  readonly message: string;
}

/** PRINTUSASCII without spaces, bounded; `-` (NILVALUE) when empty. */
function headerField(value: string | number | undefined, max: number): string {
  if (value === undefined) return '-';
  const clean = String(value)
    .replace(/[^\x21-\x7e]/g, '_')
    .slice(0, max);
  return clean === '' ? '-' : clean;
}

/** Control characters (other than tab) become U+FFFD; the result fits MAX_MESSAGE_BYTES. */
export function cleanMessage(message: string): string {
  // eslint-disable-next-line no-control-regex
  let clean = message.replace(/[\x00-\x08\x0a-\x1f\x7f]/g, '\ufffd');
  if (Buffer.byteLength(clean) > MAX_MESSAGE_BYTES) {
    clean = `${Buffer.from(clean)
      .subarray(0, MAX_MESSAGE_BYTES - 16)
      .toString('utf8')
      .replace(/\ufffd$/, '')} [truncated]`;
  }
  return clean;
}

/** One RFC 5424 line, without the trailing newline. */
export function formatSyslogLine(r: SyslogRecord): string {
  const pri = FACILITY_USER * 8 + SEVERITY[r.severity];
  return [
    `<${pri}>1`,
    r.time.toISOString(),
    headerField(r.hostname, 255),
    headerField(r.appName, 48),
    headerField(r.procId, 128),
    headerField(r.msgId, 32),
    '-',
    cleanMessage(r.message),
  ].join(' ');
}

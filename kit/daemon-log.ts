import { formatSyslogLine, type Severity } from './rfc5424.js';
import type { WorkerLog } from './worker-log.js';

/**
 * A worker daemon's own log (the agent's, the updater's, the forwarder's) as RFC 5424 lines in
 * the worker log, so the forwarder ships it home beside the services' output and
 * `corral controller logs HOST --service corral-agent` reads it.
 *
 * It is a pino destination: pino hands `write` one JSON record per call. Records are queued
 * (bounded) and appended in batches by one writer; when the queue is full a record is dropped
 * and counted, and the next batch written says how many were dropped. The daemon never waits
 * for its log file: a full disk or a slow file costs log lines, not heartbeats.
 */
export interface DaemonLogSink {
  /** The pino destination call: one JSON record (with its newline). Never throws. */
  write(record: string): void;
  /** Resolves once every record written so far is in the file (or dropped). */
  idle(): Promise<void>;
  /** Records dropped so far because the queue was full or the file could not be written. */
  dropped(): number;
  /** Writes what is queued, then closes the worker log. Idempotent. */
  close(): Promise<void>;
}

/** Records that may wait for the file; more are dropped (and counted). */
export const DAEMON_LOG_MAX_QUEUED = 1000;
/** Longest record looked at, in bytes; a longer one is cut before it is parsed. */
const MAX_RECORD_BYTES = 64 * 1024;
/** Fields of a pino record that the RFC 5424 header already carries, or that are noise. */
const HEADER_FIELDS = new Set(['level', 'time', 'pid', 'hostname', 'name', 'msg', 'v']);

/** pino's numeric levels to syslog severities (fatal is still an error to a reader). */
function severityOf(level: unknown): Severity {
  if (typeof level !== 'number') return 'info';
  if (level >= 50) return 'err';
  if (level >= 40) return 'warning';
  return 'info';
}

/** `msg` then the record's own fields as compact JSON; an error keeps its type and message, not its stack. */
function messageOf(record: Record<string, unknown>): string {
  const rest: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(record)) {
    if (HEADER_FIELDS.has(key)) continue;
    if (value !== null && typeof value === 'object' && 'message' in value && 'stack' in value) {
      const { stack: _stack, ...err } = value as Record<string, unknown>;
      rest[key] = err;
    } else rest[key] = value;
  }
  const msg = typeof record.msg === 'string' ? record.msg : '';
  return Object.keys(rest).length === 0 ? msg : `${msg} ${JSON.stringify(rest)}`;
}

/** One pino record as an RFC 5424 line; a record that is not JSON is kept as its text. */
export function daemonLogLine(
  raw: string,
  o: { readonly appName: string; readonly hostname: string; readonly now: () => Date },
): string {
  const text = raw.length > MAX_RECORD_BYTES ? raw.slice(0, MAX_RECORD_BYTES) : raw;
  let record: Record<string, unknown> | undefined;
  try {
    const parsed: unknown = JSON.parse(text);
    if (parsed !== null && typeof parsed === 'object' && !Array.isArray(parsed))
      record = parsed as Record<string, unknown>;
  } catch (e: unknown) {
    // Not JSON (cut, or not from pino): shipped as the text it is.
    if (!(e instanceof SyntaxError)) throw e;
  }
  const time = typeof record?.time === 'number' ? new Date(record.time) : o.now();
  return formatSyslogLine({
    time: Number.isNaN(time.getTime()) ? o.now() : time,
    hostname: o.hostname,
    appName: o.appName,
    procId: process.pid,
    severity: severityOf(record?.level),
    message: record ? messageOf(record) : text.trimEnd(),
  });
}

export function createDaemonLogSink(o: {
  readonly log: WorkerLog;
  /** RFC 5424 APP-NAME: `corral-agent`, `corral-updater`, `corral-forwarder`. */
  readonly appName: string;
  readonly hostname: string;
  readonly maxQueued?: number;
  readonly now?: () => Date;
}): DaemonLogSink {
  const maxQueued = o.maxQueued ?? DAEMON_LOG_MAX_QUEUED;
  const now = o.now ?? (() => new Date());
  let queue: string[] = [];
  let dropped = 0;
  let reported = 0;
  let writing: Promise<void> | undefined;
  let closing: Promise<void> | undefined;

  async function flush(): Promise<void> {
    while (queue.length > 0) {
      const batch = queue;
      queue = [];
      if (dropped > reported) {
        const lost = dropped - reported;
        reported = dropped;
        batch.push(
          formatSyslogLine({
            time: now(),
            hostname: o.hostname,
            appName: o.appName,
            procId: process.pid,
            severity: 'warning',
            message: `${lost} log lines of this daemon were dropped (queue full or file not writable)`,
          }),
        );
      }
      try {
        await o.log.append(batch);
      } catch (e: unknown) {
        // The file could not be written (disk full, closed): these lines are lost, and counted.
        void e;
        dropped += batch.length;
      }
    }
  }

  function kick(): void {
    writing ??= flush().finally(() => {
      writing = undefined;
      if (queue.length > 0 && !closing) kick();
    });
  }

  return {
    write(record) {
      if (closing) return;
      if (queue.length >= maxQueued) {
        dropped += 1;
        return;
      }
      queue.push(daemonLogLine(record, { appName: o.appName, hostname: o.hostname, now }));
      kick();
    },
    async idle() {
      while (writing) await writing;
    },
    dropped: () => dropped,
    close() {
      closing ??= (async () => {
        while (writing) await writing;
        await flush();
        await o.log.close();
      })();
      return closing;
    },
  };
}

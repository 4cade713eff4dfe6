import { open, stat } from 'node:fs/promises';
import { join } from 'node:path';
import type { Kysely } from 'kysely';
import {
  MAX_LOG_GREP_CHARS,
  MAX_LOG_LIMIT,
  MAX_LOG_MATCH_CHARS,
  MAX_LOG_MESSAGE_CHARS,
  type LogLine,
} from '../../protocol/admin-logs.js';
import { CorralError, ErrorCode } from '../../protocol/errors.js';
import { HOST_ID_RE } from '../../pki/roles.js';
import type { ControllerDatabase } from '../db/schema.js';
import { findHostByName } from '../fleet/host-store.js';
import { listHostFiles, type HostFile } from '../syslog/index.js';
import { parseRfc5424 } from './rfc5424.js';

/** How long one page may read, in ms; then it answers what it found, marked partial. */
export const LOG_QUERY_BUDGET_MS = 5_000;
/** Bytes one page reads at most, across files; then it answers what it found, marked partial. */
export const LOG_QUERY_MAX_BYTES = 512 * 1024 * 1024;
/** Hosts one query covers at most (no host given: every host with files). */
export const LOG_QUERY_MAX_HOSTS = 1_000;
const READ_CHUNK_BYTES = 256 * 1024;

/** A host whose files are read: resolved through the database, never from a path in the query. */
export interface LogHost {
  readonly id: string;
  readonly name: string;
}

export interface LogFilter {
  readonly service?: string | undefined;
  readonly sinceMs?: number | undefined;
  readonly untilMs?: number | undefined;
  readonly grep?: RegExp | undefined;
}

/** A line with its host, and its time as a number for merging. */
export interface FoundLine {
  readonly tsMs: number | undefined;
  readonly line: LogLine;
}

function refused(message: string): CorralError {
  return new CorralError(ErrorCode.LOG_QUERY_REFUSED, message);
}

/**
 * A `grep` pattern compiled, or CORRAL_ERR_LOG_QUERY_REFUSED: too long, not a regular
 * expression, or of a shape that can take exponential time on a crafted line (a quantified
 * group that itself holds a quantifier, as in `(a+)+`; back-references; lookbehind). Matching
 * is further bounded by the length of text matched and the query's time budget.
 */
export function compileGrep(pattern: string): RegExp {
  if (pattern.length > MAX_LOG_GREP_CHARS) {
    throw refused(`grep pattern of ${pattern.length} characters; at most ${MAX_LOG_GREP_CHARS}`);
  }
  if (/\\[1-9k]/.test(pattern) || pattern.includes('(?<=') || pattern.includes('(?<!')) {
    throw refused('grep pattern: back-references and lookbehind are not allowed');
  }
  if (/\([^()]*[*+?}][^()]*\)\s*[*+?{]/.test(pattern) || /\)[*+?}]\)?[*+{]/.test(pattern)) {
    throw refused('grep pattern: a repeated group that repeats inside (like (a+)+) is not allowed');
  }
  try {
    return new RegExp(pattern, 'u');
  } catch (e: unknown) {
    throw refused(`grep pattern is not a regular expression: ${e instanceof Error ? e.message : String(e)}`);
  }
}

/** Checks a limit against the maximum (CORRAL_ERR_LOG_QUERY_REFUSED). */
export function checkLimit(limit: number): number {
  if (limit > MAX_LOG_LIMIT) throw refused(`limit ${limit} is over the maximum of ${MAX_LOG_LIMIT} lines`);
  return limit;
}

/**
 * The hosts a query reads: one by name (the host holding it now, else the last to hold it) or
 * by id; every host the database knows when `host` is undefined. NOT_FOUND for an unknown one.
 */
export async function resolveLogHosts(
  db: Kysely<ControllerDatabase>,
  host: string | undefined,
): Promise<LogHost[]> {
  if (host === undefined) {
    const rows = await db
      .selectFrom('hosts')
      .select(['id', 'name'])
      .orderBy('name')
      .limit(LOG_QUERY_MAX_HOSTS)
      .execute();
    return rows;
  }
  const byName = await findHostByName(db, host);
  if (byName) return [{ id: byName.id, name: byName.name }];
  if (HOST_ID_RE.test(host)) {
    const byId = await db
      .selectFrom('hosts')
      .select(['id', 'name'])
      .where('id', '=', host)
      .executeTakeFirst();
    if (byId) return [byId];
  }
  throw new CorralError(ErrorCode.NOT_FOUND, `no host named ${host} (nor with that id)`);
}

/** Parses a stored line into what the API answers; undefined when the filter leaves it out. */
export function matchLine(host: LogHost, text: string, filter: LogFilter): FoundLine | undefined {
  const parsed = parseRfc5424(text);
  if (filter.service !== undefined && parsed.appName !== filter.service) return undefined;
  if (filter.sinceMs !== undefined && (parsed.tsMs === undefined || parsed.tsMs < filter.sinceMs))
    return undefined;
  if (filter.untilMs !== undefined && (parsed.tsMs === undefined || parsed.tsMs > filter.untilMs))
    return undefined;
  if (filter.grep && !filter.grep.test(parsed.message.slice(0, MAX_LOG_MATCH_CHARS))) return undefined;
  const cut = parsed.message.length > MAX_LOG_MESSAGE_CHARS;
  return {
    tsMs: parsed.tsMs,
    line: {
      ts: parsed.tsMs === undefined ? null : new Date(parsed.tsMs).toISOString(),
      host: host.name,
      hostId: host.id,
      service: parsed.appName ?? null,
      message: cut ? parsed.message.slice(0, MAX_LOG_MESSAGE_CHARS) : parsed.message,
      ...(cut ? { truncated: true } : {}),
    },
  };
}

/** Where a follower resumes a host's current file: its inode and the offset read up to. */
export interface FileMark {
  readonly name: string;
  readonly ino: number;
  readonly offset: number;
}

export interface Budget {
  readonly deadline: number;
  bytesLeft: number;
  spent: boolean;
}

export const newBudget = (now = performance.now()): Budget => ({
  deadline: now + LOG_QUERY_BUDGET_MS,
  bytesLeft: LOG_QUERY_MAX_BYTES,
  spent: false,
});

/**
 * Reads complete lines of `path` from `from` up to `to` (bytes), calling `each` for every
 * one; returns the offset after the last complete line. Stops early when the budget is spent.
 */
export async function readLines(
  path: string,
  from: number,
  to: number,
  budget: Budget,
  each: (line: string) => void,
): Promise<number> {
  const fh = await open(path, 'r');
  try {
    let at = from;
    let rest: Buffer = Buffer.alloc(0);
    let consumed = from;
    const buf = Buffer.alloc(READ_CHUNK_BYTES);
    while (at < to) {
      if (performance.now() > budget.deadline || budget.bytesLeft <= 0) {
        budget.spent = true;
        break;
      }
      const { bytesRead } = await fh.read(buf, 0, Math.min(buf.length, to - at), at);
      if (bytesRead === 0) break;
      at += bytesRead;
      budget.bytesLeft -= bytesRead;
      const chunk =
        rest.length > 0 ? Buffer.concat([rest, buf.subarray(0, bytesRead)]) : buf.subarray(0, bytesRead);
      let start = 0;
      for (let nl = chunk.indexOf(0x0a); nl !== -1; nl = chunk.indexOf(0x0a, start)) {
        each(chunk.toString('utf8', start, nl));
        consumed += nl + 1 - start;
        start = nl + 1;
      }
      rest = Buffer.from(chunk.subarray(start));
    }
    return consumed;
  } finally {
    await fh.close();
  }
}

/** The newest `limit` lines that pass `filter`, oldest first (a ring of the last ones seen). */
class Newest {
  readonly lines: FoundLine[] = [];
  constructor(private readonly limit: number) {}
  push(found: FoundLine): void {
    this.lines.push(found);
    if (this.lines.length > this.limit * 2) this.lines.splice(0, this.lines.length - this.limit);
  }
  take(): FoundLine[] {
    return this.lines.slice(-this.limit);
  }
}

/**
 * One host's newest `limit` matching lines across its files, and the mark its current file
 * was read up to (for a follower). Files are read newest first, each from its start, until
 * enough lines are found; a file changed after the query began (rotated meanwhile) is read to
 * its size then.
 */
export async function readHost(
  logDir: string,
  host: LogHost,
  filter: LogFilter,
  limit: number,
  budget: Budget,
): Promise<{ lines: FoundLine[]; mark: FileMark | undefined }> {
  const files: HostFile[] = await listHostFiles(logDir, host.id);
  const current = files.filter((f) => f.generation === undefined).at(-1);
  let mark: FileMark | undefined;
  if (current) {
    const st = await stat(join(logDir, current.name)).catch(() => undefined);
    if (st) mark = { name: current.name, ino: st.ino, offset: st.size };
  }
  const found: FoundLine[][] = [];
  let count = 0;
  for (const f of [...files].reverse()) {
    if (count >= limit || budget.spent) break;
    const newest = new Newest(limit);
    const size = f === current && mark ? mark.offset : f.size;
    const end = await readLines(join(logDir, f.name), 0, size, budget, (text) => {
      const m = matchLine(host, text, filter);
      if (m) newest.push(m);
    }).catch((e: unknown) => {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return 0; // pruned while read
      throw e;
    });
    if (f === current && mark) mark = { ...mark, offset: end };
    const lines = newest.take();
    found.unshift(lines);
    count += lines.length;
  }
  return { lines: found.flat().slice(-limit), mark };
}

/** Lines of several hosts in one order: by timestamp (lines without one keep their place). */
export function mergeByTime(perHost: readonly FoundLine[][]): FoundLine[] {
  const all: { found: FoundLine; host: number; i: number; key: number }[] = [];
  for (const [h, lines] of perHost.entries()) {
    let last = Number.NEGATIVE_INFINITY;
    for (const [i, found] of lines.entries()) {
      last = found.tsMs ?? last;
      all.push({ found, host: h, i, key: last });
    }
  }
  all.sort((a, b) => a.key - b.key || a.host - b.host || a.i - b.i);
  return all.map((x) => x.found);
}

import { once } from 'node:events';
import type { ServerResponse } from 'node:http';
import { stat } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { SSE_CONTENT_TYPE } from '../../protocol/fleet-events.js';
import type { LogLine } from '../../protocol/admin-logs.js';
import { listHostFiles } from '../syslog/index.js';
import {
  matchLine,
  mergeByTime,
  newBudget,
  readLines,
  type FileMark,
  type FoundLine,
  type LogFilter,
  type LogHost,
} from './log-query.js';

/** How often followed files are looked at for new lines, in ms. */
export const FOLLOW_POLL_MS = 200;
/** How often the hosts of a follow over every host are looked up again (new hosts), in ms. */
const FOLLOW_HOSTS_MS = 5_000;
/** A comment goes out when nothing else did for this long, in ms (proxies cut idle streams). */
const KEEP_ALIVE_MS = 15_000;

export const sseLine = (line: LogLine): string => `event: line\ndata: ${JSON.stringify(line)}\n\n`;

async function write(raw: ServerResponse, chunk: string, signal: AbortSignal): Promise<void> {
  if (raw.write(chunk)) return;
  await once(raw, 'drain', { signal });
}

/**
 * New lines of one host since its mark: the rest of the file the mark is in (found by inode,
 * among the current file and the rotated ones, so a rotation loses nothing: the ingest
 * rotates a file only once everything in it is written), then the current file.
 */
async function readNew(
  logDir: string,
  host: LogHost,
  mark: FileMark | undefined,
  filter: LogFilter,
): Promise<{ lines: FoundLine[]; mark: FileMark | undefined }> {
  const files = await listHostFiles(logDir, host.id);
  const current = files.filter((f) => f.generation === undefined).at(-1);
  const lines: FoundLine[] = [];
  const budget = newBudget();
  const each = (text: string): void => {
    const m = matchLine(host, text, filter);
    if (m) lines.push(m);
  };
  if (!current) return { lines, mark };
  const path = join(logDir, current.name);
  const st = await stat(path).catch(() => undefined);
  if (!st) return { lines, mark };
  let from = 0;
  if (mark && mark.ino === st.ino) from = mark.offset;
  else if (mark) {
    for (const f of files.filter((x) => x.generation !== undefined).reverse()) {
      const old = await stat(join(logDir, f.name)).catch(() => undefined);
      if (old?.ino !== mark.ino) continue;
      await readLines(join(logDir, f.name), mark.offset, old.size, budget, each);
      break;
    }
  }
  const end = await readLines(path, from, st.size, budget, each);
  return { lines, mark: { name: current.name, ino: st.ino, offset: end } };
}

/**
 * Streams lines as the hosts' ingest files grow, as server-sent events (`event: line`, one
 * JSON LogLine each), from the marks a page was read up to, until `signal` aborts or the
 * client goes. `hosts` is asked again now and then, so a follow over every host takes in new
 * ones. Survives rotations of the files (readNew).
 */
export async function followLogs(o: {
  readonly raw: ServerResponse;
  readonly logDir: string;
  readonly hosts: () => Promise<readonly LogHost[]>;
  readonly marks: Map<string, FileMark | undefined>;
  readonly first: readonly LogLine[];
  readonly filter: LogFilter;
  readonly signal: AbortSignal;
  readonly pollMs?: number;
}): Promise<void> {
  const { raw, signal } = o;
  raw.writeHead(200, {
    'content-type': `${SSE_CONTENT_TYPE}; charset=utf-8`,
    'cache-control': 'no-store',
    'x-accel-buffering': 'no',
    connection: 'keep-alive',
  });
  raw.flushHeaders();
  try {
    for (const line of o.first) await write(raw, sseLine(line), signal);
    let hosts = await o.hosts();
    let hostsAt = performance.now();
    let quietSince = performance.now();
    while (!signal.aborted) {
      if (performance.now() - hostsAt > FOLLOW_HOSTS_MS) {
        hosts = await o.hosts();
        hostsAt = performance.now();
      }
      const perHost: FoundLine[][] = [];
      for (const host of hosts) {
        const got = await readNew(o.logDir, host, o.marks.get(host.id), o.filter);
        o.marks.set(host.id, got.mark);
        if (got.lines.length > 0) perHost.push(got.lines);
      }
      for (const found of mergeByTime(perHost)) await write(raw, sseLine(found.line), signal);
      if (perHost.length > 0) quietSince = performance.now();
      else if (performance.now() - quietSince > KEEP_ALIVE_MS) {
        await write(raw, ': keep-alive\n\n', signal);
        quietSince = performance.now();
      }
      await sleep(o.pollMs ?? FOLLOW_POLL_MS, undefined, { signal }).catch(() => undefined /* aborted */);
    }
  } catch (e: unknown) {
    if (!signal.aborted) throw e;
  } finally {
    raw.end();
  }
}

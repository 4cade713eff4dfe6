import { open } from 'node:fs/promises';
import {
  DIAGNOSTIC_KINDS,
  type DiagnosticKind,
  type DiagnosticsRequest,
  type DiagnosticsResponse,
} from '../protocol/agent-api.js';
import { CorralError, ErrorCode } from '../protocol/errors.js';
import { diskUsage, readMeminfo } from './link/host-metrics.js';
import { streamFile } from './logs/log-capture.js';
import { listProcesses } from '../kit/proc.js';

export interface DiagnosticsContext {
  /** Filesystems reported by `disk`. */
  readonly diskPaths: readonly string[];
  /** Directory of a known service, or undefined. */
  serviceDir(name: string): string | undefined;
  /** pid → service name for processes the agent supervises. */
  servicePids(): ReadonlyMap<number, string>;
}

const DEFAULT_TAIL_LINES = 100;
/** How far back from the end of a stream file `log-tail` reads, in bytes. */
const TAIL_WINDOW_BYTES = 256 * 1024;
const TOP_PROCESSES = 25;

function isAllowed(kind: string): kind is DiagnosticKind {
  return (DIAGNOSTIC_KINDS as readonly string[]).includes(kind);
}

/**
 * Runs one diagnostic from the fixed allow-list. Anything else is CORRAL_ERR_FORBIDDEN:
 * the controller cannot make the agent run arbitrary commands.
 */
export async function runDiagnostic(
  req: DiagnosticsRequest,
  ctx: DiagnosticsContext,
): Promise<DiagnosticsResponse> {
  if (!isAllowed(req.kind)) {
    throw new CorralError(
      ErrorCode.FORBIDDEN,
      `diagnostic ${JSON.stringify(req.kind.slice(0, 64))} is not allowed`,
    );
  }
  switch (req.kind) {
    case 'disk':
      return {
        kind: 'disk',
        filesystems: await Promise.all(
          ctx.diskPaths.map(async (path) => ({ path, ...(await diskUsage(path)) })),
        ),
      };
    case 'memory': {
      const mem = await readMeminfo();
      return {
        kind: 'memory',
        totalBytes: mem.get('MemTotal') ?? 0,
        availableBytes: mem.get('MemAvailable') ?? 0,
        swapTotalBytes: mem.get('SwapTotal') ?? 0,
        swapFreeBytes: mem.get('SwapFree') ?? 0,
        agentRssBytes: process.memoryUsage.rss(),
      };
    }
    case 'processes': {
      const all = await listProcesses();
      const services = ctx.servicePids();
      const top = [...all].sort((a, b) => b.rssBytes - a.rssBytes).slice(0, TOP_PROCESSES);
      return {
        kind: 'processes',
        total: all.length,
        top: top.map((p) => ({
          pid: p.pid,
          command: p.comm.slice(0, 64),
          state: p.state.slice(0, 4),
          rssBytes: p.rssBytes,
          service: services.get(p.pid) ?? null,
        })),
      };
    }
    case 'log-tail': {
      if (req.service === undefined)
        throw new CorralError(ErrorCode.VALIDATION, 'body/service is required for log-tail');
      const dir = ctx.serviceDir(req.service);
      if (dir === undefined) throw new CorralError(ErrorCode.NOT_FOUND, `no service named ${req.service}`);
      const lines = req.lines ?? DEFAULT_TAIL_LINES;
      return {
        kind: 'log-tail',
        service: req.service,
        stdout: await tail(streamFile(dir, 'stdout'), lines),
        stderr: await tail(streamFile(dir, 'stderr'), lines),
      };
    }
  }
}

/** The last `count` lines of a file (each cut to 8 KiB), reading at most TAIL_WINDOW_BYTES. */
export async function tail(path: string, count: number): Promise<string[]> {
  let fh;
  try {
    fh = await open(path, 'r');
  } catch (e: unknown) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw e;
  }
  try {
    const { size } = await fh.stat();
    const length = Math.min(size, TAIL_WINDOW_BYTES);
    const buf = Buffer.alloc(length);
    await fh.read(buf, 0, length, size - length);
    const lines = buf.toString('utf8').split('\n');
    if (lines.at(-1) === '') lines.pop();
    if (length < size) lines.shift(); // the first line is probably cut
    return lines.slice(-count).map((l) => l.slice(0, 8192));
  } finally {
    await fh.close();
  }
}

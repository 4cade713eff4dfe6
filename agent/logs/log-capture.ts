import { open, stat, truncate } from 'node:fs/promises';
import { join } from 'node:path';
import { Type } from '@sinclair/typebox';
import { readJsonFile, writeJsonAtomic } from '../../kit/json-file.js';
import { UNTRACKED, type StateFiles } from '../state/state-manifest.js';
import { formatSyslogLine, type Severity } from '../../kit/rfc5424.js';
import type { WorkerLog } from '../../kit/worker-log.js';
import { SingleFlight } from '../../kit/single-flight.js';

/**
 * Why files and not pipes: a service's stdout and stderr are opened by the agent as append-only
 * files under `services/<name>/` and handed to the process. The process never holds a pipe to
 * the agent, so it keeps running (no SIGPIPE, no blocked writes) when the agent stops or is
 * killed, and what it prints meanwhile waits in the file. The agent tails the files into
 * RFC 5424 lines in the worker log and persists how far it got (per stream: inode + offset),
 * so a restarted agent resumes where the last one stopped: at-least-once, the forwarder's
 * concern from there on. Shipped files over `truncateAboveBytes` are truncated in place
 * (the writer's O_APPEND carries on at the new end); bytes written in the instant between
 * the last read and the truncate are the one loss this design accepts.
 */
export const STREAMS = ['stdout', 'stderr'] as const;
export type StreamName = (typeof STREAMS)[number];
export const streamFile = (serviceDir: string, stream: StreamName): string =>
  join(serviceDir, `${stream}.log`);

const SEVERITY_OF: Record<StreamName, Severity> = { stdout: 'info', stderr: 'err' };
export const OFFSETS_FILE = 'log-offsets.json';
export const MAX_OFFSETS_BYTES = 4096;
/** Largest read per stream per pump, in bytes: bounds memory with many chatty services. */
const MAX_CHUNK_BYTES = 256 * 1024;
/** A line longer than this is shipped in pieces. */
const MAX_LINE_BYTES = 8192;
export const DEFAULT_TRUNCATE_ABOVE_BYTES = 8 * 1024 * 1024;

const Position = Type.Object({ ino: Type.Integer(), offset: Type.Integer({ minimum: 0 }) });
/** `services/<name>/log-offsets.json`: how far each stream has been shipped. */
export const Offsets = Type.Object({ stdout: Position, stderr: Position });

interface StreamState {
  ino: number;
  offset: number;
  /** File size at the previous pump, to ship a partial last line once output has paused. */
  lastSize: number;
}

export interface LogCapture {
  /** Ships whatever is new; returns the number of lines written to the worker log. Pumps take turns. */
  pump(): Promise<number>;
  /** Waits for a pump in progress; later pumps ship nothing (the service's directory is going). */
  close(): Promise<void>;
}

export interface LogCaptureOptions {
  readonly serviceDir: string;
  readonly service: string;
  readonly hostname: string;
  readonly workerLog: WorkerLog;
  /** The service's current pid, for PROCID. */
  readonly pid: () => number | null;
  readonly truncateAboveBytes?: number;
  readonly now?: () => number;
  /** Learns of the offsets file once written (see state-manifest.ts). */
  readonly stateFiles?: StateFiles;
}

export function createLogCapture(options: LogCaptureOptions): LogCapture {
  const offsetsPath = join(options.serviceDir, OFFSETS_FILE);
  const truncateAbove = options.truncateAboveBytes ?? DEFAULT_TRUNCATE_ABOVE_BYTES;
  const now = options.now ?? Date.now;
  let states: Record<StreamName, StreamState> | undefined;
  let noted = false;

  async function load(): Promise<Record<StreamName, StreamState>> {
    // The agent's start-up check (state-check.ts) has refused damaged offsets already.
    const saved = await readJsonFile(offsetsPath, Offsets, 'log offsets', MAX_OFFSETS_BYTES);
    return {
      stdout: { ...(saved?.stdout ?? { ino: -1, offset: 0 }), lastSize: -1 },
      stderr: { ...(saved?.stderr ?? { ino: -1, offset: 0 }), lastSize: -1 },
    };
  }

  async function pumpStream(stream: StreamName, st: StreamState): Promise<string[]> {
    const path = streamFile(options.serviceDir, stream);
    let size: number;
    let ino: number;
    try {
      ({ size, ino } = await stat(path));
    } catch (e: unknown) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return [];
      throw e;
    }
    if (ino !== st.ino || size < st.offset) {
      st.ino = ino;
      st.offset = 0;
    }
    const paused = size === st.lastSize;
    st.lastSize = size;
    if (size === st.offset) {
      if (size > truncateAbove) {
        await truncate(path, 0);
        st.offset = 0;
        st.lastSize = 0;
      }
      return [];
    }
    const length = Math.min(size - st.offset, MAX_CHUNK_BYTES);
    const buf = Buffer.alloc(length);
    const fh = await open(path, 'r');
    let read: number;
    try {
      ({ bytesRead: read } = await fh.read(buf, 0, length, st.offset));
    } finally {
      await fh.close();
    }
    const pieces: Buffer[] = [];
    let start = 0;
    for (let nl = buf.indexOf(10, 0); nl >= 0 && nl < read; nl = buf.indexOf(10, start)) {
      pieces.push(buf.subarray(start, nl));
      start = nl + 1;
    }
    // An unterminated tail is shipped once it is too long, or once output has paused.
    while (read - start >= MAX_LINE_BYTES) {
      pieces.push(buf.subarray(start, start + MAX_LINE_BYTES));
      start += MAX_LINE_BYTES;
    }
    if (start < read && paused) {
      pieces.push(buf.subarray(start, read));
      start = read;
    }
    st.offset += start;
    const time = new Date(now());
    const pid = options.pid();
    return pieces.map((p) =>
      formatSyslogLine({
        time,
        hostname: options.hostname,
        appName: options.service,
        procId: pid ?? undefined,
        msgId: stream,
        severity: SEVERITY_OF[stream],
        message: p.toString('utf8').replace(/\r$/, ''),
      }),
    );
  }

  async function pumpOnce(): Promise<number> {
    if (closed) return 0;
    states ??= await load();
    const before = `${states.stdout.ino}:${states.stdout.offset}/${states.stderr.ino}:${states.stderr.offset}`;
    let shipped = 0;
    for (const stream of STREAMS) {
      const lines = await pumpStream(stream, states[stream]);
      if (lines.length > 0) await options.workerLog.append(lines);
      shipped += lines.length;
    }
    const after = `${states.stdout.ino}:${states.stdout.offset}/${states.stderr.ino}:${states.stderr.offset}`;
    if (after !== before) {
      const { stdout, stderr } = states;
      // The first write of each start is durable, as it may list the file in the manifest.
      await writeJsonAtomic(
        offsetsPath,
        {
          stdout: { ino: stdout.ino, offset: stdout.offset },
          stderr: { ino: stderr.ino, offset: stderr.offset },
        },
        !noted,
      );
      if (!noted) await (options.stateFiles ?? UNTRACKED).note(offsetsPath);
      noted = true;
    }
    return shipped;
  }

  let closed = false;
  // A pump asked for while one waits is the same pump: it reads up to the end of the file.
  const turns = new SingleFlight({ name: 'log capture', maxQueued: 1 });
  return {
    pump() {
      return turns.coalesce('pump', pumpOnce);
    },
    async close() {
      closed = true;
      await turns.idle();
    },
  };
}

import { randomBytes } from 'node:crypto';
import { mkdir, readdir, readFile, readlink, rename, unlink, writeFile } from 'node:fs/promises';
import { dirname, isAbsolute, join, resolve } from 'node:path';
import { Type, type Static } from '@sinclair/typebox';
import { parseJsonWith } from '../protocol/validate.js';
import { identityOf, isSameProcess, type ProcessIdentity } from '../kit/proc.js';
import { CorralError, ErrorCode } from '../protocol/errors.js';

/** The worker daemons besides the agent, which a self-destruct stops too. */
export const CORRAL_DAEMONS = ['updater', 'forwarder'] as const;
export type CorralDaemon = (typeof CORRAL_DAEMONS)[number];

/** `STATE/run/<daemon>.pid`: who runs as that daemon on this state dir, and what it owns. */
export const DaemonPidFile = Type.Object(
  {
    daemon: Type.Union(CORRAL_DAEMONS.map((d) => Type.Literal(d))),
    pid: Type.Integer({ minimum: 2 }),
    startTime: Type.String({ maxLength: 32 }),
    bootId: Type.String({ maxLength: 64 }),
    /** Directories the daemon keeps outside the state dir (the updater's release root). */
    dirs: Type.Array(Type.String({ maxLength: 1024 }), { maxItems: 8 }),
  },
  { additionalProperties: false },
);
export type DaemonPidFile = Static<typeof DaemonPidFile>;

const MAX_PID_FILE_BYTES = 8 * 1024;
const MAX_CMDLINE_BYTES = 64 * 1024;
/** The argv words that name each daemon's command (`corral updater serve`, `corral forwarder run`). */
const COMMAND_WORDS: Record<CorralDaemon, readonly [string, string]> = {
  updater: ['updater', 'serve'],
  forwarder: ['forwarder', 'run'],
};

export const daemonPidFile = (stateDir: string, daemon: CorralDaemon): string =>
  join(stateDir, 'run', `${daemon}.pid`);

/**
 * Writes this process's pid file for `daemon` (atomically; 0644). The returned `remove` deletes
 * it only while it still names this process, so a successor's file is never removed.
 */
export async function writeDaemonPidFile(
  stateDir: string,
  daemon: CorralDaemon,
  dirs: readonly string[] = [],
): Promise<{ remove(): Promise<void> }> {
  const me = await identityOf(process.pid);
  if (!me) throw new CorralError(ErrorCode.PROCESS_FAILED, 'cannot read this process in /proc');
  const path = daemonPidFile(stateDir, daemon);
  const body: DaemonPidFile = { daemon, ...me, dirs: dirs.map((d) => resolve(d)) };
  await mkdir(dirname(path), { recursive: true, mode: 0o700 });
  const tmp = `${path}.${randomBytes(6).toString('hex')}.tmp`;
  await writeFile(tmp, `${JSON.stringify(body)}\n`, { mode: 0o644 });
  await rename(tmp, path);
  return {
    async remove() {
      const now = await readPidFile(path).catch(() => undefined /* garbage: not ours to judge */);
      if (now?.pid !== me.pid || now.startTime !== me.startTime) return;
      await unlink(path).catch(() => undefined /* ENOENT: already gone (self-destruct) */);
    },
  };
}

async function readPidFile(path: string): Promise<DaemonPidFile | undefined> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (e: unknown) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw e;
  }
  return parseJsonWith(DaemonPidFile, text, 'daemon pid file', MAX_PID_FILE_BYTES);
}

/** A Corral daemon of this state dir, found running. */
export interface FoundDaemon {
  readonly name: CorralDaemon;
  readonly process: ProcessIdentity;
  /** Directories it named in its pid file (empty when found by its command line only). */
  readonly dirs: readonly string[];
  readonly foundBy: 'pid-file' | 'cmdline';
}

/** argv of a process, or undefined when it is gone or unreadable. */
async function cmdlineOf(pid: number): Promise<string[] | undefined> {
  try {
    const raw = await readFile(`/proc/${pid}/cmdline`);
    if (raw.length === 0 || raw.length > MAX_CMDLINE_BYTES) return undefined;
    return raw.toString('utf8').replace(/\0$/, '').split('\0');
  } catch {
    return undefined; // ENOENT or ESRCH: it exited while we looked
  }
}

/** The real uid of a process (from /proc/<pid>/status), or undefined. */
async function uidOf(pid: number): Promise<number | undefined> {
  try {
    const status = await readFile(`/proc/${pid}/status`, 'utf8');
    const m = /^Uid:\s+(\d+)/m.exec(status);
    return m ? Number(m[1]) : undefined;
  } catch {
    return undefined; // ENOENT: it exited while we looked
  }
}

/** The value of `--state-dir` in argv (as given, or `--state-dir=X`), resolved against `cwd`. */
function stateDirArg(argv: readonly string[], cwd: string): string | undefined {
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i] ?? '';
    const value = a === '--state-dir' ? argv[i + 1] : a.startsWith('--state-dir=') ? a.slice(12) : undefined;
    if (value !== undefined) return isAbsolute(value) ? resolve(value) : resolve(cwd, value);
  }
  return undefined;
}

/** Which daemon argv runs, when it is one of ours: the two command words in order. */
export function daemonOfArgv(argv: readonly string[]): CorralDaemon | undefined {
  for (const daemon of CORRAL_DAEMONS) {
    const [a, b] = COMMAND_WORDS[daemon];
    const at = argv.indexOf(a);
    if (at >= 0 && argv[at + 1] === b) return daemon;
  }
  return undefined;
}

/**
 * The updater and forwarder running on `stateDir`, found without regard to who started whom:
 * by their pid files (each checked against /proc: same pid, start time and boot, and its argv
 * still that daemon's), then by a /proc scan for processes of this user whose argv runs that
 * daemon with `--state-dir` naming this state dir (relative paths resolved against the
 * process's cwd). Each process is named by its identity, so a pid reused since is never
 * signalled (the reaper checks it again right before each signal). This process is skipped.
 */
export async function findCorralDaemons(stateDir: string): Promise<FoundDaemon[]> {
  const dir = resolve(stateDir);
  const found = new Map<number, FoundDaemon>();
  for (const daemon of CORRAL_DAEMONS) {
    const file = await readPidFile(daemonPidFile(dir, daemon)).catch(
      () => undefined /* garbage: a half-written file; the scan below still finds the process */,
    );
    if (!file || file.daemon !== daemon || file.pid === process.pid) continue;
    const identity = { pid: file.pid, startTime: file.startTime, bootId: file.bootId };
    if (!(await isSameProcess(identity))) continue;
    const argv = await cmdlineOf(file.pid);
    if (!argv || daemonOfArgv(argv) !== daemon) continue;
    found.set(file.pid, { name: daemon, process: identity, dirs: file.dirs, foundBy: 'pid-file' });
  }
  const myUid = process.getuid?.();
  for (const entry of await readdir('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const pid = Number(entry);
    if (pid === process.pid || found.has(pid)) continue;
    const argv = await cmdlineOf(pid);
    const daemon = argv ? daemonOfArgv(argv) : undefined;
    if (!argv || !daemon) continue;
    if (myUid !== undefined && (await uidOf(pid)) !== myUid) continue;
    let cwd: string;
    try {
      cwd = await readlink(`/proc/${pid}/cwd`);
    } catch {
      continue; // ENOENT or EACCES: gone, or not ours to look at
    }
    if (stateDirArg(argv, cwd) !== dir) continue;
    const identity = await identityOf(pid);
    if (!identity) continue;
    found.set(pid, { name: daemon, process: identity, dirs: [], foundBy: 'cmdline' });
  }
  return [...found.values()].sort((a, b) => a.name.localeCompare(b.name) || a.process.pid - b.process.pid);
}

import { readdir, readFile, readlink } from 'node:fs/promises';
import { isAbsolute, resolve } from 'node:path';
import { cmdlineOf, daemonOfArgv, livePidFile } from '../../kit/pid-file.js';
import { identityOf, type ProcessIdentity } from '../../kit/proc.js';

/** The worker daemons besides the agent, which a self-destruct stops too. */
export const CORRAL_DAEMONS = ['updater', 'forwarder'] as const;
export type CorralDaemon = (typeof CORRAL_DAEMONS)[number];

/** A Corral daemon of this state dir, found running. */
export interface FoundDaemon {
  readonly name: CorralDaemon;
  readonly process: ProcessIdentity;
  /** Directories it named in its pid file (empty when found by its command line only). */
  readonly dirs: readonly string[];
  readonly foundBy: 'pid-file' | 'cmdline';
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
    const file = await livePidFile(dir, daemon, { command: true });
    if (!file || file.pid === process.pid) continue;
    const identity = { pid: file.pid, startTime: file.startTime, bootId: file.bootId };
    found.set(file.pid, { name: daemon, process: identity, dirs: file.dirs, foundBy: 'pid-file' });
  }
  const myUid = process.getuid?.();
  for (const entry of await readdir('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const pid = Number(entry);
    if (pid === process.pid || found.has(pid)) continue;
    const argv = await cmdlineOf(pid);
    const daemon = argv ? daemonOfArgv(argv) : undefined;
    if (!argv || (daemon !== 'updater' && daemon !== 'forwarder')) continue;
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

import { randomBytes } from 'node:crypto';
import { mkdir, open, readFile, rename, unlink, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { CorralError, ErrorCode } from '../protocol/errors.js';
import {
  DAEMON_COMMAND_WORDS,
  MAX_PID_FILE_BYTES,
  PID_FILE_DAEMONS,
  PidFile,
  type PidFileDaemon,
} from '../protocol/pid-file.js';
import { parseJsonWith } from '../protocol/validate.js';
import { identityOf, isSameProcess, type ProcessIdentity } from './proc.js';

const MAX_CMDLINE_BYTES = 64 * 1024;
const CLAIM_ATTEMPTS = 3;

/** `STATE/run/<daemon>.pid`: where every daemon of a state dir is recorded. */
export const pidFilePath = (stateDir: string, daemon: PidFileDaemon): string =>
  join(stateDir, 'run', `${daemon}.pid`);

/**
 * The record at `path`; undefined when there is none. Throws CORRAL_ERR_VALIDATION (or
 * _PAYLOAD_TOO_LARGE) for a file that is not one (half-written by a crash, or damaged).
 */
export async function readPidFile(path: string): Promise<PidFile | undefined> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (e: unknown) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw e;
  }
  return parseJsonWith(PidFile, text, `pid file ${path}`, MAX_PID_FILE_BYTES);
}

/** argv of a process, or undefined when it is gone, unreadable or implausibly long. */
export async function cmdlineOf(pid: number): Promise<string[] | undefined> {
  try {
    const raw = await readFile(`/proc/${pid}/cmdline`);
    if (raw.length === 0 || raw.length > MAX_CMDLINE_BYTES) return undefined;
    return raw.toString('utf8').replace(/\0$/, '').split('\0');
  } catch (e: unknown) {
    void e; // ENOENT or ESRCH: it exited while we looked
    return undefined;
  }
}

/** Which daemon argv runs, when it is one of ours: the first pair of command words in it. */
export function daemonOfArgv(argv: readonly string[]): PidFileDaemon | undefined {
  for (let i = 0; i + 1 < argv.length; i++) {
    const daemon = PID_FILE_DAEMONS.find((d) => DAEMON_COMMAND_WORDS[d][0] === argv[i]);
    if (daemon && DAEMON_COMMAND_WORDS[daemon][1] === argv[i + 1]) return daemon;
  }
  return undefined;
}

const sameIdentity = (a: ProcessIdentity, b: ProcessIdentity): boolean =>
  a.pid === b.pid && a.startTime === b.startTime && a.bootId === b.bootId;

/**
 * The record of `daemon` in `stateDir` when it names a live process (same pid, start time and
 * boot) and, with `command`, one whose argv still runs that daemon; undefined otherwise
 * (no file, a damaged one, a process gone or a pid reused since).
 */
export async function livePidFile(
  stateDir: string,
  daemon: PidFileDaemon,
  o: { command?: boolean } = {},
): Promise<PidFile | undefined> {
  const record = await readPidFile(pidFilePath(stateDir, daemon)).catch(
    () => undefined /* damaged or half-written: names no one */,
  );
  if (!record || record.daemon !== daemon || !(await isSameProcess(record))) return undefined;
  if (o.command) {
    const argv = await cmdlineOf(record.pid);
    if (!argv || daemonOfArgv(argv) !== daemon) return undefined;
  }
  return record;
}

/** A pid file this process wrote or claimed. */
export interface PidFileClaim {
  readonly path: string;
  readonly record: PidFile;
  /** Deletes the file while it still names the claimed process (never a successor's). Idempotent. */
  release(): Promise<void>;
}

/** Deletes `path` only while it names `owner`. */
export async function removePidFileOf(path: string, owner: ProcessIdentity): Promise<void> {
  const now = await readPidFile(path).catch(() => undefined /* damaged: not ours to judge */);
  if (!now || !sameIdentity(now, owner)) return;
  await unlink(path).catch(() => undefined /* ENOENT: already gone (self-destruct) */);
}

async function writeAtomic(path: string, record: PidFile): Promise<void> {
  const tmp = `${path}.${randomBytes(6).toString('hex')}.tmp`;
  await writeFile(tmp, `${JSON.stringify(record)}\n`, { mode: 0o644 });
  await rename(tmp, path);
}

/**
 * Records `owner` (default: this process) as `daemon` of `stateDir`. A record already there
 * that names the same process is merged (so a child keeps the version and token its updater
 * wrote for it, and the updater's late write keeps what the child wrote). A record naming
 * another live process is CORRAL_ERR_CONFLICT when `exclusive` (one such daemon per state dir;
 * the file is then created with O_EXCL, so of two starting at once one loses), and is replaced
 * otherwise. A dead owner's, or a damaged, file is taken over. Throws CORRAL_ERR_PROCESS_FAILED
 * when the owner is not (or no longer) in /proc.
 */
export async function claimPidFile(
  stateDir: string,
  daemon: PidFileDaemon,
  o: {
    exclusive: boolean;
    owner?: ProcessIdentity;
    dirs?: readonly string[];
    version?: string;
    instance?: string;
  },
): Promise<PidFileClaim> {
  const owner = o.owner ?? (await identityOf(process.pid));
  if (!owner) throw new CorralError(ErrorCode.PROCESS_FAILED, `cannot read the ${daemon} process in /proc`);
  const path = pidFilePath(stateDir, daemon);
  await mkdir(dirname(path), { recursive: true, mode: 0o700 });
  const fresh: PidFile = {
    daemon,
    pid: owner.pid,
    startTime: owner.startTime,
    bootId: owner.bootId,
    dirs: [...(o.dirs ?? [])],
    ...(o.version !== undefined ? { version: o.version } : {}),
    ...(o.instance !== undefined ? { instance: o.instance } : {}),
  };
  let released = false;
  const claim = (record: PidFile): PidFileClaim => ({
    path,
    record,
    async release() {
      if (released) return;
      released = true;
      await removePidFileOf(path, owner);
    },
  });
  for (let attempt = 0; attempt < CLAIM_ATTEMPTS; attempt++) {
    let heldText: string | undefined;
    if (o.exclusive) {
      try {
        const fh = await open(path, 'wx', 0o644);
        try {
          await fh.writeFile(`${JSON.stringify(fresh)}\n`);
          await fh.sync();
        } finally {
          await fh.close();
        }
        return claim(fresh);
      } catch (e: unknown) {
        if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
      }
    }
    let held: PidFile | undefined;
    try {
      heldText = await readFile(path, 'utf8');
      held = parseJsonWith(PidFile, heldText, `pid file ${path}`, MAX_PID_FILE_BYTES);
    } catch (e: unknown) {
      void e; // ENOENT (a racer removed it) or damaged (a crash mid-write): names no one
      held = undefined;
    }
    if (held && held.daemon === daemon && sameIdentity(held, owner)) {
      // Fields this claim leaves out (absent keys) keep what the other writer put there.
      const merged: PidFile = { ...held, ...fresh, dirs: fresh.dirs.length > 0 ? fresh.dirs : held.dirs };
      await writeAtomic(path, merged);
      return claim(merged);
    }
    if (held && (await isSameProcess(held))) {
      if (o.exclusive)
        throw new CorralError(
          ErrorCode.CONFLICT,
          `another ${daemon} (pid ${held.pid}) is running on ${stateDir}`,
        );
    }
    if (!o.exclusive) {
      await writeAtomic(path, fresh);
      return claim(fresh);
    }
    // A dead owner's file: removed only while it is still the one judged, so a racer's fresh
    // claim made meanwhile is not deleted (the window left is the re-read's).
    const again = await readFile(path, 'utf8').catch(() => undefined /* ENOENT: gone already */);
    if (again !== undefined && again === heldText)
      await unlink(path).catch(() => undefined /* ENOENT: a racer removed it first */);
  }
  throw new CorralError(ErrorCode.CONFLICT, `could not take ${path}`);
}

import { readdir, readFile } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';

/**
 * Process facts from Linux /proc. A pid alone does not name a process (pids are reused), so
 * the agent names one by pid + start time (field 22 of /proc/<pid>/stat, clock ticks since
 * boot) + boot id: a reused pid, or the same pid after a reboot, never matches.
 */
export interface ProcessIdentity {
  readonly pid: number;
  readonly startTime: string;
  readonly bootId: string;
}

export interface ProcStat {
  readonly pid: number;
  readonly comm: string;
  /** R, S, D, Z, T, … */
  readonly state: string;
  readonly ppid: number;
  readonly pgrp: number;
  readonly session: number;
  readonly startTime: string;
  readonly rssBytes: number;
}

const PAGE_BYTES = 4096;

/** Parses one /proc/<pid>/stat line; the comm field may hold spaces and parentheses. */
export function parseProcStat(pid: number, text: string): ProcStat | undefined {
  const open = text.indexOf('(');
  const close = text.lastIndexOf(')');
  if (open < 0 || close < open) return undefined;
  const rest = text
    .slice(close + 2)
    .trim()
    .split(' ');
  // rest[0] is field 3 (state); field N is rest[N - 3].
  const state = rest[0];
  const startTime = rest[19];
  if (state === undefined || startTime === undefined) return undefined;
  return {
    pid,
    comm: text.slice(open + 1, close),
    state,
    ppid: Number(rest[1]),
    pgrp: Number(rest[2]),
    session: Number(rest[3]),
    startTime,
    rssBytes: Number(rest[21] ?? 0) * PAGE_BYTES,
  };
}

export async function readProcStat(pid: number, procRoot = '/proc'): Promise<ProcStat | undefined> {
  let text: string;
  try {
    text = await readFile(`${procRoot}/${pid}/stat`, 'utf8');
  } catch (e: unknown) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ESRCH') return undefined;
    throw e;
  }
  return parseProcStat(pid, text);
}

let cachedBootId: string | undefined;

export async function bootId(): Promise<string> {
  cachedBootId ??= (await readFile('/proc/sys/kernel/random/boot_id', 'utf8')).trim();
  return cachedBootId;
}

/** The identity of a live (non-zombie) process, or undefined. */
export async function identityOf(pid: number): Promise<ProcessIdentity | undefined> {
  const stat = await readProcStat(pid);
  if (!stat || stat.state === 'Z' || stat.state === 'X') return undefined;
  return { pid, startTime: stat.startTime, bootId: await bootId() };
}

/** True when `id` still names a live process: same pid, same start time, same boot. */
export async function isSameProcess(id: ProcessIdentity): Promise<boolean> {
  const now = await identityOf(id.pid);
  return now !== undefined && now.startTime === id.startTime && now.bootId === id.bootId;
}

/** Every process in /proc (unreadable entries skipped: they exited while we looked). */
export async function listProcesses(): Promise<ProcStat[]> {
  const names = await readdir('/proc');
  const out: ProcStat[] = [];
  for (const name of names) {
    if (!/^\d+$/.test(name)) continue;
    const stat = await readProcStat(Number(name));
    if (stat) out.push(stat);
  }
  return out;
}

/**
 * Environments larger than this are not read into variables (a process of ours never has one:
 * Linux caps arguments plus environment at a quarter of the stack limit, 2 MiB by default).
 */
export const MAX_ENVIRON_BYTES = 2 * 1024 * 1024;

/**
 * The `NAME=value` entries of process `pid`'s environment (as it was at exec), or undefined
 * when it cannot be read: the process is gone (ENOENT), is not ours to read (EACCES, EPERM),
 * or the environment is over MAX_ENVIRON_BYTES. How a daemon recognizes the processes it
 * started by a marker it put in their environment, even after it restarted itself.
 */
export async function readEnviron(pid: number, procRoot = '/proc'): Promise<string[] | undefined> {
  let environ: Buffer;
  try {
    environ = await readFile(`${procRoot}/${pid}/environ`);
  } catch (e: unknown) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ESRCH' || code === 'EACCES' || code === 'EPERM') return undefined;
    throw e;
  }
  if (environ.length > MAX_ENVIRON_BYTES) return undefined;
  return environ.toString('utf8').split('\0');
}

/** The value of `name` in an environment read by readEnviron, or undefined. */
export function environValue(environ: readonly string[], name: string): string | undefined {
  return environ.find((v) => v.startsWith(`${name}=`))?.slice(name.length + 1);
}

/** Live (non-zombie) members of process group `pgid`. */
export async function groupMembers(pgid: number): Promise<number[]> {
  if (!groupExists(pgid)) return [];
  const all = await listProcesses();
  return all.filter((p) => p.pgrp === pgid && p.state !== 'Z' && p.state !== 'X').map((p) => p.pid);
}

/** kill(-pgid, 0): whether any process (zombies included) is still in the group. */
export function groupExists(pgid: number): boolean {
  return signalGroup(pgid, 0);
}

/** Signals a whole process group; false when the group no longer exists. */
export function signalGroup(pgid: number, signal: NodeJS.Signals | 0): boolean {
  if (!Number.isInteger(pgid) || pgid <= 1) throw new RangeError(`refusing to signal process group ${pgid}`);
  try {
    process.kill(-pgid, signal);
    return true;
  } catch (e: unknown) {
    if ((e as NodeJS.ErrnoException).code === 'ESRCH') return false;
    throw e;
  }
}

/** Whether `pid` is a live (non-zombie) process; one owned by another user counts as alive. */
export async function isAlive(pid: number): Promise<boolean> {
  try {
    process.kill(pid, 0);
  } catch (e: unknown) {
    // ESRCH: gone. EPERM: exists but belongs to someone else (alive).
    if ((e as NodeJS.ErrnoException).code !== 'EPERM') return false;
  }
  let stat: ProcStat | undefined;
  try {
    stat = await readProcStat(pid);
  } catch (e: unknown) {
    // Any failure but ENOENT to read the stat of a pid that kill(0) found: it is there.
    void e;
    return true;
  }
  return stat !== undefined && stat.state !== 'Z' && stat.state !== 'X';
}

const WAIT_GONE_POLL_MS = 50;

/** Polls until `pid` is gone or `timeoutMs` passed; true when gone. */
export async function waitGone(pid: number, timeoutMs: number): Promise<boolean> {
  const deadline = performance.now() + timeoutMs;
  while (performance.now() < deadline) {
    if (!(await isAlive(pid))) return true;
    await sleep(WAIT_GONE_POLL_MS);
  }
  return !(await isAlive(pid));
}

/** Signals one process; false when it no longer exists. */
export function signalProcess(pid: number, signal: NodeJS.Signals | 0): boolean {
  if (!Number.isInteger(pid) || pid <= 1) throw new RangeError(`refusing to signal pid ${pid}`);
  try {
    process.kill(pid, signal);
    return true;
  } catch (e: unknown) {
    if ((e as NodeJS.ErrnoException).code === 'ESRCH') return false;
    throw e;
  }
}

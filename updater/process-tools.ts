import { open, readFile } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';

const POLL_MS = 50;

/** Whether `pid` is a live (non-zombie) process. */
export async function isAlive(pid: number): Promise<boolean> {
  try {
    process.kill(pid, 0);
  } catch (e: unknown) {
    // ESRCH: gone. EPERM: exists but belongs to someone else (alive).
    if ((e as NodeJS.ErrnoException).code !== 'EPERM') return false;
  }
  try {
    const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
    // The state follows the parenthesized command name, which may itself hold spaces.
    const state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
    return state !== 'Z' && state !== 'X';
  } catch (e: unknown) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return false;
    return true;
  }
}

/**
 * Whether process `pid` carries `NAME=value` in its environment: how an updater recognizes an
 * agent it started even after a restart, and never signals a stranger that reused the pid.
 * Linux (/proc); false when it cannot tell.
 */
export async function hasEnvToken(pid: number, name: string, value: string): Promise<boolean> {
  try {
    const environ = await readFile(`/proc/${pid}/environ`);
    return environ.toString('utf8').split('\0').includes(`${name}=${value}`);
  } catch (e: unknown) {
    // ENOENT (gone) or EACCES (not ours): either way not the agent we started.
    void e;
    return false;
  }
}

/** Sends `signal` to `pid`; false when it was already gone. */
export function signalPid(pid: number, signal: NodeJS.Signals): boolean {
  try {
    process.kill(pid, signal);
    return true;
  } catch (e: unknown) {
    if ((e as NodeJS.ErrnoException).code === 'ESRCH') return false;
    throw e;
  }
}

/** Polls until `pid` is gone or `timeoutMs` passed; true when gone. */
export async function waitGone(pid: number, timeoutMs: number): Promise<boolean> {
  const deadline = performance.now() + timeoutMs;
  while (performance.now() < deadline) {
    if (!(await isAlive(pid))) return true;
    await sleep(POLL_MS);
  }
  return !(await isAlive(pid));
}

/** The last `maxBytes` of `path` from byte `from` on, as text; '' when there is none. */
export async function tailFile(path: string, from: number, maxBytes: number): Promise<string> {
  let fh;
  try {
    fh = await open(path, 'r');
  } catch (e: unknown) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return '';
    throw e;
  }
  try {
    const { size } = await fh.stat();
    const start = Math.max(size < from ? 0 : from, size - maxBytes);
    const buf = Buffer.alloc(size - start);
    const { bytesRead } = await fh.read(buf, 0, buf.length, start);
    return buf.subarray(0, bytesRead).toString('utf8');
  } finally {
    await fh.close();
  }
}

/** Runs async functions one at a time, in call order. */
export class Serial {
  #tail: Promise<unknown> = Promise.resolve();

  run<T>(fn: () => Promise<T>): Promise<T> {
    const next = this.#tail.then(fn, fn);
    this.#tail = next.catch(() => undefined /* the caller sees the error through `next` */);
    return next;
  }
}

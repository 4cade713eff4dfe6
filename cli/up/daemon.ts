import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { closeSync, openSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { CorralError, ErrorCode } from '../../protocol/errors.js';

/** How a daemon ended: its exit code, or the signal that ended it. */
export interface DaemonExit {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
}

/** One long-lived process `corral up` started, in its own process group. */
export interface Daemon extends AsyncDisposable {
  readonly name: string;
  readonly pid: number;
  readonly logFile: string;
  readonly exited: Promise<DaemonExit>;
  running(): boolean;
  /** Sends a signal to the daemon's process group; false when it is gone. */
  signal(signal: NodeJS.Signals): boolean;
  /**
   * SIGTERM to the group, SIGKILL after `graceMs`; resolves once the daemon has exited.
   * Idempotent. Never throws.
   */
  stop(graceMs?: number): Promise<DaemonExit>;
}

export interface SpawnDaemonOptions {
  readonly name: string;
  readonly command: string;
  readonly args: readonly string[];
  /** stdout and stderr are appended here (created 0600). */
  readonly logFile: string;
  readonly env?: NodeJS.ProcessEnv;
  readonly cwd?: string;
}

export const DEFAULT_STOP_GRACE_MS = 10_000;

/**
 * Starts a daemon detached in its own process group, so a Ctrl-C at the terminal reaches
 * only `corral up`, which then stops everything in order. Resolves once the process exists
 * (after `spawn`), rejects when it cannot be started.
 */
export async function spawnDaemon(o: SpawnDaemonOptions): Promise<Daemon> {
  const fd = openSync(o.logFile, 'a', 0o600);
  let child: ChildProcess;
  try {
    child = spawn(o.command, [...o.args], {
      detached: true,
      stdio: ['ignore', fd, fd],
      env: o.env ?? process.env,
      ...(o.cwd !== undefined ? { cwd: o.cwd } : {}),
    });
  } finally {
    closeSync(fd);
  }
  const exited = once(child, 'exit').then(
    ([code, signal]) => ({ code: code as number | null, signal: signal as NodeJS.Signals | null }),
    () => ({ code: null, signal: null }),
  );
  await new Promise<void>((resolve, reject) => {
    child.once('spawn', resolve);
    child.once('error', reject);
  });
  // Later errors (a failed kill) are seen through `signal`'s own checks and `exited`.
  child.on('error', () => undefined);
  const pid = child.pid;
  if (pid === undefined) throw new CorralError(ErrorCode.PROCESS_FAILED, `${o.name}: no pid after spawn`);
  let done = false;
  void exited.then(() => (done = true));

  const signal = (sig: NodeJS.Signals): boolean => {
    if (done) return false;
    try {
      process.kill(-pid, sig);
      return true;
    } catch (e: unknown) {
      // ESRCH: the group is already gone (the leader exited and nothing else is left).
      if ((e as NodeJS.ErrnoException).code !== 'ESRCH') throw e;
      return false;
    }
  };
  let stopping: Promise<DaemonExit> | undefined;
  const stop = (graceMs = DEFAULT_STOP_GRACE_MS): Promise<DaemonExit> =>
    (stopping ??= (async () => {
      signal('SIGTERM');
      const ac = new AbortController();
      const outcome = await Promise.race([
        exited,
        sleep(graceMs, 'timeout' as const, { signal: ac.signal }).catch(() => 'aborted' as const),
      ]);
      ac.abort();
      if (outcome === 'timeout') signal('SIGKILL');
      return exited;
    })());
  return {
    name: o.name,
    pid,
    logFile: o.logFile,
    exited,
    running: () => !done,
    signal,
    stop,
    async [Symbol.asyncDispose]() {
      await stop();
    },
  };
}

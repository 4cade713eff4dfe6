import { readFile, unlink } from 'node:fs/promises';
import { writeFileAtomic } from '../pki/index.js';

/**
 * A daemon's pid file: `{ "pid": N, "command": "updater serve", "startedAt": ISO }`, written by the
 * daemon once it serves and removed when it stops. Install, uninstall and self-destruct find the
 * daemon through it, and check /proc before they believe it (a pid can be reused).
 */
export async function writePidFile(path: string, command: string): Promise<void> {
  const record = { pid: process.pid, command, startedAt: new Date().toISOString() };
  await writeFileAtomic(path, `${JSON.stringify(record)}\n`, 0o600);
}

/** Removes the pid file if it still names this process. */
export async function removePidFile(path: string): Promise<void> {
  if ((await readPid(path)) !== process.pid) return;
  await unlink(path).catch(() => undefined /* already gone */);
}

async function readPid(path: string): Promise<number | undefined> {
  try {
    const value = JSON.parse(await readFile(path, 'utf8')) as { pid?: unknown };
    return typeof value.pid === 'number' && Number.isSafeInteger(value.pid) && value.pid > 0
      ? value.pid
      : undefined;
  } catch (e: unknown) {
    void e; // ENOENT or half-written: no daemon recorded
    return undefined;
  }
}

/**
 * The pid recorded in `path` when that process is alive and its command line holds `corral`
 * and every one of `words` (`['updater', 'serve']`); undefined otherwise.
 */
export async function runningPid(path: string, words: readonly string[]): Promise<number | undefined> {
  const pid = await readPid(path);
  if (pid === undefined) return undefined;
  try {
    const argv = (await readFile(`/proc/${pid}/cmdline`, 'utf8')).split('\0');
    const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
    if (/\) [ZX] /.test(stat)) return undefined;
    const ok = argv.some((a) => a.includes('corral')) && words.every((w) => argv.includes(w));
    return ok ? pid : undefined;
  } catch (e: unknown) {
    void e; // ENOENT: the process is gone
    return undefined;
  }
}

import { spawn } from 'node:child_process';
import { closeSync, openSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { INSTALL_KILL_ENV } from './kill-points.js';
import { SYSTEMD_UNIT_DIR } from './systemd-units.js';
import { CorralError, ErrorCode } from '../../protocol/errors.js';

const execFileAsync = promisify(execFile);

/**
 * Starts a Corral daemon detached (its own session, so it outlives the install and the shell),
 * output appended to `logFile`. Resolves with its pid once it exists; rejects when it cannot be
 * started at all (missing node binary).
 */
export async function startDetached(o: {
  node: string;
  args: readonly string[];
  logFile: string;
  cwd: string;
}): Promise<number> {
  await mkdir(join(o.logFile, '..'), { recursive: true, mode: 0o700 });
  const fd = openSync(o.logFile, 'a', 0o600);
  const env: NodeJS.ProcessEnv = { ...process.env };
  delete env[INSTALL_KILL_ENV];
  try {
    const child = spawn(o.node, [...o.args], { detached: true, stdio: ['ignore', fd, fd], env, cwd: o.cwd });
    await new Promise<void>((resolve, reject) => {
      child.once('spawn', resolve);
      child.once('error', reject);
    });
    child.on('error', () => undefined /* a later error concerns a process we no longer watch */);
    child.unref();
    if (child.pid === undefined)
      throw new CorralError(ErrorCode.PROCESS_FAILED, `${o.node}: no pid after spawn`);
    return child.pid;
  } finally {
    closeSync(fd);
  }
}

/** Polls `check` every 200 ms until it returns a value or `timeoutMs` passes (then undefined). */
export async function pollFor<T>(
  check: () => Promise<T | undefined>,
  timeoutMs: number,
): Promise<T | undefined> {
  const deadline = performance.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value !== undefined) return value;
    if (performance.now() > deadline) return undefined;
    await sleep(200);
  }
}

/** Writes unit files, reloads systemd and enables and starts them (`systemctl enable --now`). */
export async function installUnits(units: Record<string, string>): Promise<void> {
  for (const [name, text] of Object.entries(units)) {
    await writeFile(join(SYSTEMD_UNIT_DIR, `${name}.service`), text, { mode: 0o644 });
  }
  await execFileAsync('systemctl', ['daemon-reload'], { timeout: 60_000 });
  await execFileAsync('systemctl', ['enable', '--now', ...Object.keys(units).map((u) => `${u}.service`)], {
    timeout: 120_000,
  });
}

/** Stops and disables units, removes their files, reloads systemd. Missing units are fine. */
export async function removeUnits(names: readonly string[]): Promise<void> {
  await execFileAsync('systemctl', ['disable', '--now', ...names.map((u) => `${u}.service`)], {
    timeout: 120_000,
  }).catch(() => undefined /* not loaded: nothing to stop */);
  const { rm } = await import('node:fs/promises');
  for (const name of names) await rm(join(SYSTEMD_UNIT_DIR, `${name}.service`), { force: true });
  await execFileAsync('systemctl', ['daemon-reload'], { timeout: 60_000 }).catch(
    () => undefined /* reload failure leaves only stale unit names listed */,
  );
}

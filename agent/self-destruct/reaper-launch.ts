import { spawn } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { once } from 'node:events';
import { CorralError, ErrorCode } from '../../protocol/errors.js';

export type SystemdMode = 'auto' | 'never';

async function initIsSystemd(): Promise<boolean> {
  try {
    return (await readFile('/proc/1/comm', 'utf8')).trim() === 'systemd';
  } catch {
    return false; // ENOENT or EACCES: treat as no systemd
  }
}

/**
 * Starts the reaper so that it outlives the agent: under systemd (pid 1) as a transient unit
 * through `systemd-run` (a stop of the agent's unit kills its whole cgroup, so a mere child
 * would die with it); otherwise as a detached process in its own session.
 * `argv` is the full command; the plan file is its last argument.
 */
export async function launchReaper(
  argv: readonly string[],
  mode: SystemdMode,
): Promise<'systemd-run' | 'detached'> {
  const [command, ...args] = argv;
  if (!command) throw new CorralError(ErrorCode.VALIDATION, 'empty reaper command');
  if (mode === 'auto' && (await initIsSystemd())) {
    const child = spawn(
      'systemd-run',
      ['--collect', '--quiet', '--unit', `corral-reaper-${process.pid}`, '--', command, ...args],
      { stdio: 'ignore' },
    );
    const [code] = (await once(child, 'exit')) as [number | null];
    if (code !== 0)
      throw new CorralError(ErrorCode.COMMAND_FAILED, `systemd-run exited with ${code ?? 'a signal'}`);
    return 'systemd-run';
  }
  const child = spawn(command, args, { detached: true, stdio: 'ignore' });
  await new Promise<void>((resolve, reject) => {
    child.once('spawn', resolve);
    child.once('error', reject);
  });
  child.unref();
  return 'detached';
}

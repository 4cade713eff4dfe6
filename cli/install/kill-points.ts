/** Test hook, read only here: `CORRAL_TEST_INSTALL_KILL_AT=<point>` SIGKILLs an install there. */
export const INSTALL_KILL_ENV = 'CORRAL_TEST_INSTALL_KILL_AT';

/** Where an install can be cut short by the test hook, in the order they are reached. */
export const INSTALL_KILL_POINTS = ['joined', 'copying', 'copied', 'journal', 'config', 'started'] as const;
export type InstallKillPoint = (typeof INSTALL_KILL_POINTS)[number];

/**
 * Ends the process with SIGKILL at `point` when the test hook names it: the way a power cut or
 * the OOM killer ends an install, with no cleanup of any kind.
 */
export function installKillPoint(point: InstallKillPoint): void {
  if (process.env[INSTALL_KILL_ENV] === point) process.kill(process.pid, 'SIGKILL');
}

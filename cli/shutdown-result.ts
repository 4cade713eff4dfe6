import type { Logger } from 'pino';
import type { PhaseOutcome, ShutdownResult } from '../kit/shutdown.js';
import { CliExit, EXIT_FAILURE } from './exit.js';

/**
 * What every daemon command does once waitForShutdown returns: each failed phase is logged;
 * a second signal that cut the shutdown short ends the command with exit 1 and
 * `second SIGTERM: exiting at once` (the CLI entry then exits without waiting further).
 * Returns the failed phases for the command to judge.
 */
export function settleShutdown(log: Logger, result: ShutdownResult): PhaseOutcome[] {
  if (result.forcedBy) {
    log.warn({ signal: result.forcedBy }, 'second signal: exiting without waiting for shutdown');
    log.flush();
    throw new CliExit(EXIT_FAILURE, `second ${result.forcedBy}: exiting at once`);
  }
  const failed = result.outcomes.filter((o) => !o.ok);
  for (const o of failed)
    log.error({ phase: o.name, timedOut: o.timedOut ?? false, err: o.error }, 'shutdown phase failed');
  return failed;
}

import { resolve } from 'node:path';
import type { Command } from 'commander';
import { parseDurationMs } from '../duration.js';
import { CliExit, EXIT_USAGE } from '../exit.js';
import type { Output } from '../output.js';
import { waitForShutdown } from '../../kit/shutdown.js';

/** How long `up` waits for its daemons to stop before it says so (they get SIGKILL earlier). */
const UP_STOP_TIMEOUT_MS = 300_000;

const MAX_WORKERS = 50;
const TTY_REFRESH_MS = 2_000;
const SNAPSHOT_REFRESH_MS = 5_000;

interface UpFlags {
  workers: string;
  for?: string;
  heartbeatInterval: string;
  refresh?: string;
  deploy: boolean;
}

function duration(flag: string, value: string): number {
  try {
    return parseDurationMs(value);
  } catch (e: unknown) {
    throw new CliExit(EXIT_USAGE, `${flag}: ${e instanceof Error ? e.message : String(e)}`);
  }
}

/** `corral up`: a whole local fleet on loopback. */
export function registerUpCommand(program: Command, io: Output): Command {
  return program
    .command('up')
    .description('bring up a local fleet on loopback to try Corral')
    .option('--workers <n>', `workers to start (1-${MAX_WORKERS})`, '3')
    .option('--for <duration>', 'stop by itself after this long (e.g. 30s); default: until Ctrl-C')
    .option('--heartbeat-interval <duration>', 'heartbeat interval of the fleet', '2s')
    .option(
      '--refresh <duration>',
      'how often the table is redrawn (default 2s), or printed when not a terminal (default 5s)',
    )
    .option('--no-deploy', 'start the fleet without the sample deployment')
    .action(async (flags: UpFlags) => {
      const workers = Number(flags.workers);
      if (!Number.isInteger(workers) || workers < 1 || workers > MAX_WORKERS)
        throw new CliExit(EXIT_USAGE, `--workers must be a whole number from 1 to ${MAX_WORKERS}`);
      const heartbeatIntervalMs = duration('--heartbeat-interval', flags.heartbeatInterval);
      if (heartbeatIntervalMs < 1000)
        throw new CliExit(EXIT_USAGE, '--heartbeat-interval must be at least 1s');
      const tty = process.stdout.isTTY === true;
      const refreshMs =
        flags.refresh === undefined
          ? tty
            ? TTY_REFRESH_MS
            : SNAPSHOT_REFRESH_MS
          : duration('--refresh', flags.refresh);
      const forMs = flags.for === undefined ? undefined : duration('--for', flags.for);
      const script = process.argv[1];
      if (script === undefined) throw new CliExit(EXIT_USAGE, 'cannot tell where the corral CLI is');

      const stop = new AbortController();
      // Output closed (e.g. `corral up | head`): stop like a Ctrl-C rather than die mid-way.
      const onOutputError = (e: NodeJS.ErrnoException): void => {
        if (e.code !== 'EPIPE') throw e;
        stop.abort();
      };
      process.stdout.on('error', onOutputError);
      process.stderr.on('error', onOutputError);
      const { runUp } = await import('../up/run-up.js');
      const running = runUp(
        { workers, heartbeatIntervalMs, refreshMs, forMs, deploy: flags.deploy },
        { cli: { bin: resolve(script) }, io, tty, stop: stop.signal },
      );
      // Never forced: `up` always stops what it started, however often it is asked.
      await waitForShutdown(
        [{ name: 'stop what up started', run: () => running, timeoutMs: UP_STOP_TIMEOUT_MS }],
        {
          forceOnSecondSignal: false,
          signals: ['SIGINT', 'SIGTERM', 'SIGHUP'],
          until: running,
          onSignal: (signal, count) => {
            if (count === 1) stop.abort();
            else io.err(`corral up: ${signal} again; still stopping what it started, please wait\n`);
          },
        },
      );
      await running;
    });
}

import { execFile } from 'node:child_process';
import { CorralError, ErrorCode } from '../../protocol/errors.js';

/** The result of one `corral …` command run as a child process. */
export interface CliResult {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

/** How to run the `corral` CLI: `node <bin>` with an optional prefix (e.g. `ip netns exec NS`). */
export interface CorralCommand {
  /** Absolute path of `bin/corral.js`. */
  readonly bin: string;
  /** Node executable; default the running one. */
  readonly node?: string;
}

const CLI_TIMEOUT_MS = 120_000;
const MAX_CLI_OUTPUT_BYTES = 16 * 1024 * 1024;

/** Runs `corral ARGS` to completion; never throws for a non-zero exit (see `code`). */
export function runCorral(
  cli: CorralCommand,
  args: readonly string[],
  o: { env?: NodeJS.ProcessEnv; timeoutMs?: number } = {},
): Promise<CliResult> {
  return new Promise((resolve) => {
    execFile(
      cli.node ?? process.execPath,
      [cli.bin, ...args],
      {
        env: o.env ?? process.env,
        timeout: o.timeoutMs ?? CLI_TIMEOUT_MS,
        maxBuffer: MAX_CLI_OUTPUT_BYTES,
        killSignal: 'SIGKILL',
      },
      (error, stdout, stderr) => {
        const code = error ? (typeof error.code === 'number' ? error.code : 1) : 0;
        resolve({ code, stdout, stderr });
      },
    );
  });
}

/** Runs `corral ARGS --json` and parses stdout; throws with stderr when it fails. */
export async function corralJson<T>(
  cli: CorralCommand,
  args: readonly string[],
  o: { env?: NodeJS.ProcessEnv; timeoutMs?: number } = {},
): Promise<T> {
  const r = await runCorral(cli, args, o);
  if (r.code !== 0) {
    throw new CorralError(
      ErrorCode.COMMAND_FAILED,
      `corral ${args.slice(0, 2).join(' ')} exited ${r.code}: ${r.stderr.trim()}`,
    );
  }
  return JSON.parse(r.stdout) as T;
}

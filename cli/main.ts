import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { CommanderError } from 'commander';
import { CliExit, EXIT_FAILURE, EXIT_OK, EXIT_USAGE } from './exit.js';
import { inline, stdio } from './output.js';
import { buildProgram } from './program.js';
import { drained, watchStdio } from './stdio-drain.js';

function readVersion(): string {
  const pkgPath = fileURLToPath(new URL('../../package.json', import.meta.url));
  const pkg = JSON.parse(readFileSync(pkgPath, 'utf8')) as { version?: unknown };
  return typeof pkg.version === 'string' ? pkg.version : '0.0.0';
}

/** The message of a failure and its code, if it has one (loads the error registry only then). */
async function describeError(e: unknown): Promise<string> {
  const { hasErrorCode } = await import('../protocol/errors.js');
  if (hasErrorCode(e)) return `${e.message} (${e.code})`;
  return e instanceof Error ? e.message : String(e);
}

/**
 * An error for stderr: `corral: ` and the message, each of its lines escaped on its own (the
 * message may carry text a worker sent, such as an agent's refusal). Lines after the first are
 * indented, so no part of a message can pass for a line of its own or a table row.
 */
export function errorLines(message: string): string {
  const [first = '', ...rest] = message.split('\n');
  const more = rest.map((line) => `\n  ${inline(line)}`).join('');
  return `corral: ${inline(first)}${more}\n`;
}

/**
 * `corral --profile NAME …` (before the command) is `CORRAL_PROFILE=NAME corral …`: the
 * admin commands take their target from that profile. Returns argv without it.
 */
function takeProfile(argv: readonly string[]): readonly string[] {
  const args = argv.slice(2);
  const first = args[0];
  if (first === '--profile' && args[1] !== undefined) {
    process.env.CORRAL_PROFILE = args[1];
    return [...argv.slice(0, 2), ...args.slice(2)];
  }
  if (first?.startsWith('--profile=')) {
    process.env.CORRAL_PROFILE = first.slice('--profile='.length);
    return [...argv.slice(0, 2), ...args.slice(1)];
  }
  return argv;
}

/** The CLI entry: parses argv, runs one command, and returns the process exit code. */
export async function main(given: readonly string[]): Promise<number> {
  const argv = takeProfile(given);
  const program = await buildProgram({ version: readVersion(), io: stdio }, argv.slice(2));
  try {
    await program.parseAsync([...argv]);
    return EXIT_OK;
  } catch (e: unknown) {
    if (e instanceof CommanderError) {
      if (
        e.code === 'commander.helpDisplayed' ||
        e.code === 'commander.version' ||
        e.code === 'commander.help'
      ) {
        return EXIT_OK;
      }
      return e.exitCode === 0 ? EXIT_OK : EXIT_USAGE;
    }
    if (e instanceof CliExit) {
      if (e.message) stdio.err(errorLines(e.message));
      return e.exitCode;
    }
    stdio.err(errorLines(await describeError(e)));
    return EXIT_FAILURE;
  }
}

/**
 * Runs the CLI as the process and is the only place that ends it. The command's exit code is
 * set as `process.exitCode` and the process ends only once stdout and stderr have been handed
 * to the OS, so piped output is complete however slowly it is read. The exit comes even if
 * something still holds the event loop (a daemon whose drain was cut short by a second
 * signal, a phase that timed out); a signal while output is still draining ends it at once.
 */
export async function runCli(argv: readonly string[]): Promise<void> {
  const watch = watchStdio();
  let code: number;
  try {
    code = await main(argv);
  } catch (e: unknown) {
    stdio.err(errorLines(await describeError(e).catch(() => String(e) /* the registry failed to load */)));
    code = EXIT_FAILURE;
  }
  const failure = watch.failure();
  if (failure) {
    stdio.err(`corral: the output was not fully written: ${failure.message}\n`);
    if (code === EXIT_OK) code = EXIT_FAILURE;
  }
  process.exitCode = code;
  const exit = (): never => process.exit(code);
  process.once('SIGTERM', exit);
  process.once('SIGINT', exit);
  await Promise.all([drained(process.stdout), drained(process.stderr)]);
  exit();
}

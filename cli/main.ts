import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { CommanderError } from 'commander';
import { CliExit, EXIT_FAILURE, EXIT_OK, EXIT_USAGE } from './exit.js';
import { inline, stdio } from './output.js';
import { buildProgram } from './program.js';

function readVersion(): string {
  const pkgPath = fileURLToPath(new URL('../../package.json', import.meta.url));
  const pkg = JSON.parse(readFileSync(pkgPath, 'utf8')) as { version?: unknown };
  return typeof pkg.version === 'string' ? pkg.version : '0.0.0';
}

function describeError(e: unknown): string {
  if (e instanceof Error) {
    const code = (e as { code?: unknown }).code;
    return typeof code === 'string' && code.startsWith('CORRAL_ERR_') ? `${e.message} (${code})` : e.message;
  }
  return String(e);
}

/** The CLI entry: parses argv, runs one command, and returns the process exit code. */
export async function main(argv: readonly string[]): Promise<number> {
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
      if (e.message) stdio.err(`corral: ${inline(e.message)}\n`);
      return e.exitCode;
    }
    // One line, escaped: the message may carry text a worker sent (an agent's refusal).
    stdio.err(`corral: ${inline(describeError(e))}\n`);
    return EXIT_FAILURE;
  }
}

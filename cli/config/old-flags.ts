import { Option, type Command } from 'commander';
import { CliExit, EXIT_USAGE } from '../exit.js';

/**
 * Durations are flags without a unit suffix now (`--watch 30s`, `--health-timeout 30s`). The old
 * spellings `--NAME-ms <n>` stay known only to be refused with a pointer to the new one, so a
 * unit file or script written for an older Corral fails loudly instead of being misread.
 */
export function refuseOldSpellings(cmd: Command, names: readonly string[]): void {
  for (const name of names) {
    cmd.addOption(
      new Option(`--${name}-ms <n>`).hideHelp().argParser((value: string): never => {
        throw new CliExit(
          EXIT_USAGE,
          `--${name}-ms is no longer accepted: write --${name} with a unit, e.g. --${name} ${/^\d+$/.test(value) ? `${value}ms` : '30s'}`,
        );
      }),
    );
  }
}

import type { Command } from 'commander';
import type { Output } from '../output.js';

/** `corral controller release pack`, `update`, `releases`: pushing releases to updaters. */
export function registerControllerReleaseCommands(_controller: Command, _io: Output): void {
  // Filled by the updater work.
}

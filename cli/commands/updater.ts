import type { Command } from 'commander';
import type { Output } from '../output.js';

/** `corral updater …`. */
export function registerUpdaterCommands(program: Command, _io: Output): Command {
  return program.command('updater').description('run the worker updater that installs pushed releases');
}

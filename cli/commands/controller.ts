import type { Command } from 'commander';
import type { Output } from '../output.js';

/** `corral controller …`. */
export function registerControllerCommands(program: Command, _io: Output): Command {
  return program
    .command('controller')
    .description('run and drive the controller: CA, enrollment, fleet state');
}

import type { Command } from 'commander';
import type { Output } from '../output.js';

/** `corral up`: a whole local fleet on loopback. */
export function registerUpCommand(program: Command, _io: Output): Command {
  return program.command('up').description('bring up a local fleet on loopback to try Corral');
}

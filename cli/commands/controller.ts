import type { Command } from 'commander';
import type { Output } from '../output.js';
import { registerControllerReleaseCommands } from './controller-release.js';

/** `corral controller …`. */
export function registerControllerCommands(program: Command, io: Output): Command {
  const controller = program
    .command('controller')
    .description('run and drive the controller: CA, enrollment, fleet state');
  registerControllerReleaseCommands(controller, io);
  return controller;
}

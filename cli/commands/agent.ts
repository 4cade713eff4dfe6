import type { Command } from 'commander';
import type { Output } from '../output.js';

/** `corral agent …`. */
export function registerAgentCommands(program: Command, _io: Output): Command {
  return program.command('agent').description('run the worker agent that supervises services');
}

import type { Command } from 'commander';
import type { Output } from '../output.js';
import { registerAgentJoinCommand } from './agent-join.js';

/** `corral agent …`. */
export function registerAgentCommands(program: Command, io: Output): Command {
  const agent = program.command('agent').description('run the worker agent that supervises services');
  registerAgentJoinCommand(agent, io);
  return agent;
}

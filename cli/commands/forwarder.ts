import type { Command } from 'commander';
import type { Output } from '../output.js';

/** `corral forwarder …`. */
export function registerForwarderCommands(program: Command, _io: Output): Command {
  return program.command('forwarder').description('ship worker logs to the controller over syslog-over-TLS');
}

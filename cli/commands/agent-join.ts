import type { Command } from 'commander';
import type { Output } from '../output.js';

/** `corral agent join …`: enroll this worker with a join token (keys made locally). */
export function registerAgentJoinCommand(_agent: Command, _io: Output): void {
  // Filled by the controller/enrollment work.
}

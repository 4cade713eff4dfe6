import { Command, CommanderError } from 'commander';
import { registerAgentCommands } from './commands/agent.js';
import { registerControllerCommands } from './commands/controller.js';
import { registerForwarderCommands } from './commands/forwarder.js';
import { registerPkiCommands } from './commands/pki.js';
import { registerUpCommand } from './commands/up.js';
import { registerUpdaterCommands } from './commands/updater.js';
import type { Output } from './output.js';

export interface ProgramContext {
  readonly version: string;
  readonly io: Output;
}

/** Builds the whole `corral` command tree. Groups are filled by their own modules. */
export function buildProgram(ctx: ProgramContext): Command {
  const program = new Command('corral')
    .description('Corral: a self-hosted fleet control plane over mutual TLS')
    .version(ctx.version, '-V, --version', 'print the version')
    .showHelpAfterError()
    // Program options (-V/--version) only before the first subcommand, so a subcommand may
    // define its own --version (`controller release pack --version V`).
    .enablePositionalOptions()
    .configureOutput({ writeOut: (s) => ctx.io.out(s), writeErr: (s) => ctx.io.err(s) })
    .exitOverride((err: CommanderError) => {
      throw err;
    });

  registerControllerCommands(program, ctx.io);
  registerAgentCommands(program, ctx.io);
  registerUpdaterCommands(program, ctx.io);
  registerForwarderCommands(program, ctx.io);
  registerUpCommand(program, ctx.io);
  registerPkiCommands(program, ctx.io);

  applyToTree(program, (cmd) => {
    cmd.exitOverride((err: CommanderError) => {
      throw err;
    });
    cmd.configureOutput({ writeOut: (s) => ctx.io.out(s), writeErr: (s) => ctx.io.err(s) });
  });
  return program;
}

function applyToTree(cmd: Command, fn: (c: Command) => void): void {
  fn(cmd);
  for (const sub of cmd.commands) applyToTree(sub, fn);
}

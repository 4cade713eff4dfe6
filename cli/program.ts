import { Command, CommanderError } from 'commander';
import { terminalOutput, type Output } from './output.js';

export interface ProgramContext {
  readonly version: string;
  readonly io: Output;
}

/**
 * Registers a group's commands. `wanted` is the subcommand the command line names under the
 * group (`hosts` in `corral controller hosts`), when it names one: a group whose commands live
 * in several modules may load only the one that has it. Undefined: register everything.
 */
type Register = (program: Command, io: Output, wanted?: string) => unknown;

interface Group {
  readonly description: string;
  /** Loads the group's module only when the group is used: a daemon pays for its own code alone. */
  readonly load: () => Promise<Register>;
}

const GROUPS: Record<string, Group> = {
  controller: {
    description: 'run and drive the controller: CA, enrollment, fleet state',
    load: async () => (await import('./commands/controller.js')).registerControllerCommands,
  },
  agent: {
    description: 'run the worker agent that supervises services',
    load: async () => (await import('./commands/agent.js')).registerAgentCommands,
  },
  updater: {
    description: 'run the worker updater that installs pushed releases',
    load: async () => (await import('./commands/updater.js')).registerUpdaterCommands,
  },
  forwarder: {
    description: 'ship worker logs to the controller over syslog-over-TLS',
    load: async () => (await import('./commands/forwarder.js')).registerForwarderCommands,
  },
  worker: {
    description: 'install or remove a worker node on this machine',
    load: async () => (await import('./commands/worker.js')).registerWorkerCommands,
  },
  up: {
    description: 'bring up a local fleet on loopback to try Corral',
    load: async () => (await import('./commands/up.js')).registerUpCommand,
  },
  release: {
    description: 'build a release of Corral itself',
    load: async () => (await import('./commands/release.js')).registerReleaseCommands,
  },
  profile: {
    description: 'named controllers to drive with corral --profile NAME',
    load: async () => (await import('./commands/profile.js')).registerProfileCommands,
  },
  pki: {
    description: 'inspect certificates, bundles and CAs',
    load: async () => (await import('./commands/pki.js')).registerPkiCommands,
  },
};

/** The words of a command line before its first option, without a leading `help`. */
function commandWords(args: readonly string[]): string[] {
  const words: string[] = [];
  for (const a of args) {
    if (a.startsWith('-')) break;
    words.push(a);
  }
  return words[0] === 'help' ? words.slice(1) : words;
}

/** The group a command line names (`corral help X` names X), if any. */
export function groupOf(args: readonly string[]): string | undefined {
  const words = args.filter((a) => !a.startsWith('-'));
  const first = words[0] === 'help' ? words[1] : words[0];
  return first !== undefined && first in GROUPS ? first : undefined;
}

/**
 * The subcommand named right after the group (before any option), if any: `hosts` in
 * `corral controller hosts --json`. An option before it (`corral controller --x hosts`)
 * leaves it unnamed, so the whole group loads and commander reports the command line as it
 * always did.
 */
export function subcommandOf(args: readonly string[]): string | undefined {
  const words = commandWords(args);
  return words[0] !== undefined && words[0] in GROUPS ? words[1] : undefined;
}

/**
 * Builds the `corral` command tree for one command line: the group it names is loaded in
 * full, the others appear by name and description only (enough for `corral --help`).
 * `groups: 'all'` loads every group (for tests that walk the whole tree).
 */
export async function buildProgram(
  ctx: ProgramContext,
  args: readonly string[] = [],
  groups: 'named' | 'all' = 'named',
): Promise<Command> {
  // Every command writes through this one guard: whatever it prints is made terminal-safe.
  const io = terminalOutput(ctx.io);
  const program = new Command('corral')
    .description('Corral: a self-hosted fleet control plane over mutual TLS')
    .version(ctx.version, '-V, --version', 'print the version')
    .showHelpAfterError()
    // Program options (-V/--version) only before the first subcommand, so a subcommand may
    // define its own --version (`controller release pack --version V`).
    .enablePositionalOptions()
    .configureOutput({ writeOut: (s) => io.out(s), writeErr: (s) => io.err(s) })
    .exitOverride((err: CommanderError) => {
      throw err;
    });

  const wanted = groupOf(args);
  const sub = groups === 'all' ? undefined : subcommandOf(args);
  for (const [name, group] of Object.entries(GROUPS)) {
    if (groups === 'all' || name === wanted) await (await group.load())(program, io, sub);
    else program.command(name).description(group.description);
  }

  applyToTree(program, (cmd) => {
    cmd.exitOverride((err: CommanderError) => {
      throw err;
    });
    cmd.configureOutput({ writeOut: (s) => io.out(s), writeErr: (s) => io.err(s) });
  });
  return program;
}

function applyToTree(cmd: Command, fn: (c: Command) => void): void {
  fn(cmd);
  for (const sub of cmd.commands) applyToTree(sub, fn);
}

import type { Command } from 'commander';
import { CliExit, EXIT_USAGE } from '../exit.js';
import { renderJson, renderRecord, type Output } from '../output.js';
import { readSecret } from '../secret-input.js';

const collect = (value: string, previous: string[] = []): string[] => [...previous, value];

function portOf(flag: string, value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  const port = Number(value);
  if (!Number.isInteger(port) || port < 1 || port > 65535)
    throw new CliExit(EXIT_USAGE, `${flag} must be a port (1-65535)`);
  return port;
}

/** `corral agent join …`: enroll this worker with a join token (keys made locally). */
export function registerAgentJoinCommand(agent: Command, io: Output): void {
  agent
    .command('join')
    .description('enroll this worker with a single-use join token; its keys never leave it')
    .requiredOption(
      '--controller <host:port>',
      "the controller's join address (as `controller token create` prints it)",
    )
    .option('--token-file <path>', 'read the join token from this file (first line), or from stdin with -')
    .option('--token <token>', 'the join token itself (other users can read it in ps: prefer --token-file)')
    .requiredOption('--ca-pin <sha256:hex>', "the controller CA's pin")
    .requiredOption('--state-dir <dir>', 'agent state dir; the bundle is written to <dir>/bundle')
    .option('--address <address>', 'address the controller reaches this worker at (default: ours toward it)')
    .option('--agent-port <port>', 'agent port (default 8765)')
    .option('--updater-port <port>', 'updater port (default 8766)')
    .option('--san <name>', 'extra DNS name or IP for our certificates (repeatable)', collect, [])
    .option('--json', 'print JSON')
    .action(
      async (opts: {
        controller: string;
        token?: string;
        tokenFile?: string;
        caPin: string;
        stateDir: string;
        address?: string;
        agentPort?: string;
        updaterPort?: string;
        san: string[];
        json?: boolean;
      }) => {
        if ((opts.token === undefined) === (opts.tokenFile === undefined))
          throw new CliExit(
            EXIT_USAGE,
            'give the join token with exactly one of --token-file FILE|- or --token',
          );
        const agentPort = portOf('--agent-port', opts.agentPort);
        const updaterPort = portOf('--updater-port', opts.updaterPort);
        const token = opts.token ?? (await readSecret('--token-file', opts.tokenFile ?? '-', io));
        // Loaded here: only a join needs the join client, and `agent serve` shares this module.
        const { joinFleet } = await import('../../agent/link/join.js');
        const result = await joinFleet({
          controller: opts.controller,
          token,
          caPin: opts.caPin,
          stateDir: opts.stateDir,
          ...(opts.address !== undefined ? { address: opts.address } : {}),
          ...(agentPort !== undefined ? { agentPort } : {}),
          ...(updaterPort !== undefined ? { updaterPort } : {}),
          sans: opts.san,
        });
        const view = {
          bundleDir: result.bundleDir,
          ...result.manifest,
          bundleConfirmed: result.confirmed.ok ? result.confirmed.at : null,
        };
        if (!result.confirmed.ok)
          io.err(
            `corral: warning: the bundle is written, but the controller could not be told (${result.confirmed.reason}); until the agent is first seen, \`controller enroll --replace\` could take ${result.manifest.hostName} over\n`,
          );
        io.out(
          opts.json
            ? renderJson(view)
            : renderRecord(
                Object.entries(view).map(([k, v]) => [k, Array.isArray(v) ? v.join(', ') : v] as const),
              ),
        );
      },
    );
}

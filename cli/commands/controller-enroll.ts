import type { Command } from 'commander';
import { writeBundle } from '../../pki/index.js';
import type { TokenListResponse, TokenRevokeResponse } from '../../protocol/admin-tokens.js';
import type {
  BundleWrittenResponse,
  EnrollRequest,
  EnrollResponse,
  TokenCreateResponse,
} from '../../protocol/enrollment.js';
import { adminClientFor } from '../admin-client.js';
import { addAdminTargetOptions, type AdminTargetOptions } from '../controller-home.js';
import { parseDurationMs } from '../duration.js';
import { CliExit, EXIT_FAILURE, EXIT_USAGE } from '../exit.js';
import { renderJson, renderRecord, renderTable, type Output } from '../output.js';

const collect = (value: string, previous: string[] = []): string[] => [...previous, value];

function labelsOf(pairs: readonly string[]): Record<string, string> {
  const labels: Record<string, string> = {};
  for (const pair of pairs) {
    const eq = pair.indexOf('=');
    if (eq <= 0) throw new CliExit(EXIT_USAGE, `--label must be key=value, got ${pair}`);
    labels[pair.slice(0, eq)] = pair.slice(eq + 1);
  }
  return labels;
}

function portOf(flag: string, value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  const port = Number(value);
  if (!Number.isInteger(port) || port < 1 || port > 65535)
    throw new CliExit(EXIT_USAGE, `${flag} must be a port (1-65535)`);
  return port;
}

type JsonOpt = AdminTargetOptions & { json?: boolean };

/** `corral controller enroll` and `corral controller token create|list|revoke`. */
export function registerControllerEnrollCommands(controller: Command, io: Output): void {
  addAdminTargetOptions(
    controller
      .command('enroll')
      .description('enroll a host and write its bundle (keys made here; copy the bundle to the worker)')
      .requiredOption('--name <name>', 'host name (DNS-label-like, unique)')
      .requiredOption('--address <address>', 'address the controller reaches the worker at')
      .option('--agent-port <port>', 'agent port on the worker (default 8765)')
      .option('--updater-port <port>', 'updater port on the worker (default 8766)')
      .option('--san <name>', 'extra DNS name or IP for the worker certificates (repeatable)', collect, [])
      .option('--label <key=value>', 'label for placement (repeatable)', collect, [])
      .requiredOption('--out-dir <dir>', 'where to write the bundle (created 0700)')
      .option(
        '--replace',
        'take the name over from a pending host whose enrollment never completed (never seen, bundle never written)',
      )
      .option('--json', 'print JSON'),
  ).action(
    async (
      opts: JsonOpt & {
        name: string;
        address: string;
        agentPort?: string;
        updaterPort?: string;
        san: string[];
        label: string[];
        outDir: string;
        replace?: boolean;
      },
    ) => {
      const agentPort = portOf('--agent-port', opts.agentPort);
      const updaterPort = portOf('--updater-port', opts.updaterPort);
      const body: EnrollRequest = {
        name: opts.name,
        address: opts.address,
        ...(agentPort !== undefined ? { agentPort } : {}),
        ...(updaterPort !== undefined ? { updaterPort } : {}),
        ...(opts.san.length > 0 ? { sans: opts.san } : {}),
        ...(opts.label.length > 0 ? { labels: labelsOf(opts.label) } : {}),
        ...(opts.replace ? { replace: true } : {}),
      };
      const admin = await adminClientFor(opts);
      const e = await admin.post<EnrollResponse>('/v1/enroll', body);
      try {
        await writeBundle(opts.outDir, {
          caPem: e.caPem,
          manifest: e.manifest,
          identities: {
            agent: { certPem: e.agent.certPem, keyPem: e.agent.keyPem },
            updater: { certPem: e.updater.certPem, keyPem: e.updater.keyPem },
          },
        });
      } catch (err: unknown) {
        throw new CliExit(
          EXIT_FAILURE,
          `${e.name} is enrolled but its bundle could not be written to ${opts.outDir}: ${err instanceof Error ? err.message : String(err)}; run the same command with --replace (and a usable --out-dir) to enroll it afresh`,
        );
      }
      // Only now is the host more than an enrollment cut short; until then --replace may take it over.
      let bundleWrittenAt: string | null = null;
      try {
        const confirmed = await admin.post<BundleWrittenResponse>(
          `/v1/hosts/${encodeURIComponent(e.name)}/bundle-written`,
          { hostId: e.hostId },
        );
        bundleWrittenAt = confirmed.bundleWrittenAt;
      } catch (err: unknown) {
        io.err(
          `corral: warning: the bundle is written, but the controller could not be told (${err instanceof Error ? err.message : String(err)}); until the worker is first seen, \`enroll --replace\` could take ${e.name} over\n`,
        );
      }
      const view = {
        hostId: e.hostId,
        name: e.name,
        ...(e.replaced !== undefined ? { replaced: e.replaced } : {}),
        bundleDir: opts.outDir,
        bundleWrittenAt,
        controller: e.manifest.controller,
        ...(e.manifest.controllers !== undefined ? { controllers: e.manifest.controllers } : {}),
        agentFingerprint: e.agent.fingerprint,
        updaterFingerprint: e.updater.fingerprint,
        status: 'pending',
      };
      io.out(
        opts.json
          ? renderJson(view)
          : renderRecord(
              Object.entries(view).map(([k, v]) => [k, Array.isArray(v) ? v.join(', ') : v] as const),
            ),
      );
    },
  );

  const token = controller.command('token').description('single-use join tokens for `corral agent join`');

  addAdminTargetOptions(
    token
      .command('create')
      .description('make a join token for a host name (shown once; stored only as a hash)')
      .requiredOption('--name <name>', 'the host name the token enrolls')
      .option('--ttl <duration>', 'lifetime, e.g. 15m or 2h (1m..7d)', '15m')
      .option('--label <key=value>', 'label for the host (repeatable)', collect, [])
      .option('--json', 'print JSON'),
  ).action(async (opts: JsonOpt & { name: string; ttl: string; label: string[] }) => {
    let ttlSeconds: number;
    try {
      ttlSeconds = Math.round(parseDurationMs(opts.ttl) / 1000);
    } catch (e: unknown) {
      throw new CliExit(EXIT_USAGE, `--ttl: ${e instanceof Error ? e.message : String(e)}`);
    }
    const admin = await adminClientFor(opts);
    const res = await admin.post<TokenCreateResponse>('/v1/tokens', {
      name: opts.name,
      ttlSeconds,
      ...(opts.label.length > 0 ? { labels: labelsOf(opts.label) } : {}),
    });
    // The token goes in on stdin, never on the command line, where `ps` shows it to every user.
    const command = `corral agent join --controller ${res.controller} --ca-pin ${res.caPin} --state-dir <agent-state-dir> --token-file -`;
    const installCommand = `corral worker install --controller ${res.controller} --ca-pin ${res.caPin} --name ${res.view.name} --token-file -`;
    const view = {
      id: res.view.id,
      name: res.view.name,
      token: res.token,
      caPin: res.caPin,
      controller: res.controller,
      expiresAt: res.view.expiresAt,
      command,
      installCommand,
    };
    if (opts.json) {
      io.out(renderJson(view));
      return;
    }
    io.out(
      renderRecord([
        ['id', view.id],
        ['name', view.name],
        ['token', view.token],
        ['CA pin', view.caPin],
        ['join address', view.controller],
        ['expires', view.expiresAt],
      ]),
    );
    io.out(
      `\nOn a fresh worker, install and join in one go (paste the token when asked, or pipe it in; it never shows in ps):\n  ${installCommand}\nOr only join, for daemons you run yourself:\n  ${command}\n`,
    );
  });

  addAdminTargetOptions(
    token.command('list').description('list join tokens and their state').option('--json', 'print JSON'),
  ).action(async (opts: JsonOpt) => {
    const admin = await adminClientFor(opts);
    const { tokens } = await admin.get<TokenListResponse>('/v1/tokens');
    io.out(
      opts.json
        ? renderJson(tokens)
        : renderTable(
            ['id', 'name', 'state', 'created', 'expires', 'used'],
            tokens.map((t) => [t.id, t.name, t.state, t.createdAt, t.expiresAt, t.usedAt]),
          ),
    );
  });

  addAdminTargetOptions(
    token
      .command('revoke')
      .description('revoke an unused join token')
      .argument('<id>', 'token id')
      .option('--json', 'print JSON'),
  ).action(async (id: string, opts: JsonOpt) => {
    const admin = await adminClientFor(opts);
    const res = await admin.post<TokenRevokeResponse>(`/v1/tokens/${encodeURIComponent(id)}/revoke`);
    io.out(opts.json ? renderJson(res.token) : renderRecord(Object.entries(res.token)));
  });
}

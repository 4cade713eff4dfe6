import type { Command } from 'commander';
import { pino } from 'pino';
import {
  initControllerState,
  serveController,
  type ExtraListener,
  type InitResult,
} from '../../controller/index.js';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { createSyslogListener } from '../../controller/syslog/index.js';
import {
  DEFAULT_ADMIN_LISTEN,
  DEFAULT_SYSLOG_PORT,
  DEFAULT_WORKER_LISTEN,
} from '../../protocol/constants.js';
import { formatHostPort, parseHostPort } from '../../protocol/endpoints-file.js';
import { LOG_REDACT_PATHS } from '../../protocol/lifecycle.js';
import { addStateDirOption, controllerStateDir } from '../controller-home.js';
import { parseDurationMs } from '../duration.js';
import { CliExit, EXIT_FAILURE, EXIT_USAGE } from '../exit.js';
import { renderJson, renderRecord, type Output } from '../output.js';
import { hostPortOption } from '../worker-bundle.js';

const collect = (value: string, previous: string[] = []): string[] => [...previous, value];

/**
 * Listeners that run beside the controller in `serve`: the syslog listener. It is started
 * after the controller listens, accepts only certificates pinned to active hosts (and drops a
 * host's connections when its pins go), and is advertised so new bundles name it.
 */
export function controllerExtraListeners(
  stateDir: string,
  listen: { host: string; port: number },
  log: Logger,
): ExtraListener[] {
  return [
    {
      name: 'syslog',
      async start(controller, identity) {
        const listener = createSyslogListener({
          tls: identity.server,
          logDir: join(stateDir, 'logs', 'hosts'),
          pins: controller.pins,
          log: log.child({ component: 'syslog' }),
        });
        const bound = await listener.listen(listen.host, listen.port);
        const workerHost = controller.endpoints
          ? parseHostPort(controller.endpoints.worker).host
          : '127.0.0.1';
        const host = WILDCARD_HOSTS.has(bound.address) ? workerHost : bound.address;
        const endpoint = formatHostPort(host, bound.port);
        controller.advertise('syslog', endpoint);
        return { endpoint, close: () => listener.close() };
      },
    },
  ];
}

const WILDCARD_HOSTS = new Set(['0.0.0.0', '::', '']);

const REINITIALIZE_HELP =
  'replace state files that are missing or damaged (moved aside as *.damaged-TIME), saying what that destroys';

/** What `--reinitialize` replaced and destroyed, for stderr. */
function reinitializeReport(result: InitResult): string {
  if (result.reinitialized.length === 0)
    return 'corral: --reinitialize: nothing to replace; the state is whole\n';
  const lines = ['corral: --reinitialize replaced:'];
  for (const r of result.reinitialized) {
    lines.push(`  ${r.file} (${r.problem})${r.movedTo ? `: moved to ${r.movedTo}` : ''}`);
  }
  lines.push('and destroyed:', ...result.destroyed.map((d) => `  - ${d}`));
  return `${lines.join('\n')}\n`;
}

/** `corral controller init` and `corral controller serve`. */
export function registerControllerServeCommands(controller: Command, io: Output): void {
  addStateDirOption(
    controller
      .command('init')
      .description('create the CA, certificates, admin token and database (idempotent)')
      .option('--address <host>', 'name or IP workers reach the controller at (repeatable)', collect, [])
      .option('--reinitialize', REINITIALIZE_HELP)
      .option('--json', 'print JSON'),
  ).action(async (opts: { stateDir?: string; address: string[]; reinitialize?: boolean; json?: boolean }) => {
    const result = await initControllerState({
      stateDir: controllerStateDir(opts.stateDir),
      addresses: opts.address,
      reinitialize: opts.reinitialize === true,
    });
    const view = {
      stateDir: result.stateDir,
      caPin: `sha256:${result.caFingerprint}`,
      created: result.created,
      addresses: result.addresses,
      adminTokenFile: result.adminTokenFile,
      reinitialized: result.reinitialized,
      destroyed: result.destroyed,
    };
    if (opts.json) {
      io.out(renderJson(view));
      return;
    }
    io.out(
      renderRecord([
        ['state dir', view.stateDir],
        ['CA pin', view.caPin],
        ['created', view.created.length > 0 ? view.created.join(', ') : 'nothing (already initialized)'],
        ['addresses', view.addresses.join(', ')],
        ['admin token', view.adminTokenFile],
      ]),
    );
    if (opts.reinitialize) io.err(reinitializeReport(result));
    if (result.addressesIgnored) {
      io.err('corral: the addresses of the first init are kept; --address was ignored\n');
    }
  });

  addStateDirOption(
    controller
      .command('serve')
      .description('serve the admin API (operators) and the worker API (mutual TLS)')
      .option(
        '--admin-listen <host:port>',
        'admin API (plain HTTP; keep it on loopback)',
        DEFAULT_ADMIN_LISTEN,
      )
      .option('--worker-listen <host:port>', 'worker API (mutual TLS)', DEFAULT_WORKER_LISTEN)
      .option(
        '--join-listen <host:port>',
        'join listener (TLS, no client certificate; default: worker port + 1)',
      )
      .option(
        '--syslog-listen <host:port>',
        `syslog-over-TLS listener (default: the worker host, port ${DEFAULT_SYSLOG_PORT}; port 0 when the worker port is 0)`,
      )
      .option(
        '--heartbeat-interval <duration>',
        'expected heartbeat interval; liveness derives from it',
        '30s',
      )
      .option('--log-level <level>', 'pino log level', 'info')
      .option('--reinitialize', `${REINITIALIZE_HELP}, then serve`),
  ).action(
    async (opts: {
      stateDir?: string;
      adminListen: string;
      workerListen: string;
      joinListen?: string;
      syslogListen?: string;
      heartbeatInterval: string;
      logLevel: string;
      reinitialize?: boolean;
    }) => {
      const stateDir = controllerStateDir(opts.stateDir);
      const admin = hostPortOption('--admin-listen', opts.adminListen);
      const worker = hostPortOption('--worker-listen', opts.workerListen);
      const join = opts.joinListen
        ? hostPortOption('--join-listen', opts.joinListen)
        : { host: worker.host, port: worker.port === 0 ? 0 : worker.port + 1 };
      const syslog = opts.syslogListen
        ? hostPortOption('--syslog-listen', opts.syslogListen)
        : { host: worker.host, port: worker.port === 0 ? 0 : DEFAULT_SYSLOG_PORT };
      let heartbeatIntervalMs: number;
      try {
        heartbeatIntervalMs = parseDurationMs(opts.heartbeatInterval);
      } catch (e: unknown) {
        throw new CliExit(EXIT_USAGE, `--heartbeat-interval: ${e instanceof Error ? e.message : String(e)}`);
      }
      const log = pino({
        level: opts.logLevel,
        redact: [...LOG_REDACT_PATHS],
        base: { process: 'controller' },
      });
      if (opts.reinitialize) {
        const result = await initControllerState({ stateDir, reinitialize: true });
        io.err(reinitializeReport(result));
        if (result.reinitialized.length > 0) {
          log.warn({ replaced: result.reinitialized.map((r) => r.file) }, 'state reinitialized');
        }
      }
      const serving = await serveController({
        stateDir,
        admin,
        worker,
        join,
        log,
        heartbeatIntervalMs,
        extras: controllerExtraListeners(stateDir, syslog, log),
      });
      const signal = await new Promise<NodeJS.Signals>((resolve) => {
        process.once('SIGTERM', () => resolve('SIGTERM'));
        process.once('SIGINT', () => resolve('SIGINT'));
      });
      log.info({ signal }, 'shutting down');
      const forced = new Promise<never>((_, reject) => {
        const force = (): void =>
          reject(new CliExit(EXIT_FAILURE, 'second signal: exiting without draining'));
        process.once('SIGTERM', force);
        process.once('SIGINT', force);
      });
      const outcomes = await Promise.race([serving.close(), forced]);
      const failed = outcomes.filter((o) => !o.ok);
      for (const o of failed)
        log.error({ phase: o.name, timedOut: o.timedOut ?? false, err: o.error }, 'shutdown phase failed');
      log.info({ phases: outcomes.length, failed: failed.length }, 'stopped');
      await new Promise<void>((resolve) => log.flush(() => resolve()));
      if (failed.length > 0)
        throw new CliExit(EXIT_FAILURE, `shutdown incomplete: ${failed.map((o) => o.name).join(', ')}`);
    },
  );
}

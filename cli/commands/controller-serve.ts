import type { Command } from 'commander';
import { pino } from 'pino';
import {
  checkHeartbeatBudget,
  DEFAULT_RESYNC_MS,
  DEFAULT_BACKUP_KEEP,
  DEFAULT_EVENT_RETENTION,
  DEFAULT_FLEET_EVENT_RETENTION,
  DEFAULT_HEARTBEAT_BUDGET,
  initControllerState,
  parseCidr,
  parseDatabaseTarget,
  serveController,
  type DatabaseTarget,
  type ExtraListener,
  type HeartbeatBudgetLimits,
  type InitResult,
  type JoinPolicyOptions,
} from '../../controller/index.js';
import { join } from 'node:path';
import { dashboardDir } from '../installation.js';
import type { Logger } from 'pino';
import {
  createSyslogListener,
  syslogMetricLines,
  DEFAULT_INGEST_MAX_FILE_BYTES,
  DEFAULT_INGEST_RETENTION,
  type RetentionPolicy,
} from '../../controller/syslog/index.js';
import {
  DEFAULT_ADMIN_LISTEN,
  DEFAULT_SYSLOG_PORT,
  DEFAULT_WORKER_LISTEN,
  MAX_WORKER_BODY_BYTES,
} from '../../protocol/constants.js';
import { formatHostPort, isWildcardHost, parseHostPort } from '../../kit/host-port.js';
import { LOG_REDACT_PATHS } from '../../kit/log-redact.js';
import { addStateDirOption, controllerStateDir } from '../controller-home.js';
import { parseDurationMs, parseDurationOrZeroMs } from '../duration.js';
import { configPath } from '../config/config-file.js';
import { loadControllerConfig } from '../config/controller-config.js';
import { backupConfigFrom } from '../config/backup-options.js';
import { claimPidFile } from '../../kit/pid-file.js';
import { CliExit, EXIT_FAILURE, EXIT_USAGE } from '../exit.js';
import { renderJson, renderRecord, type Output } from '../output.js';
import { hostPortOption } from '../worker-bundle.js';
import { CorralError, ErrorCode } from '../../protocol/errors.js';
import { MAX_MIN_HEALTHY_MS } from '../../protocol/rollout.js';
import { listenForShutdown, type PhaseOutcome } from '../../kit/shutdown.js';
import { settleShutdown } from '../shutdown-result.js';

/** Longer than the sum of the controller's own phase timeouts (controller/serve.ts). */
const CONTROLLER_CLOSE_TIMEOUT_MS = 120_000;

const optionalString = (n: number | undefined): string | undefined =>
  n === undefined ? undefined : String(n);

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
  ingest: { maxFileBytes?: number; retention?: RetentionPolicy } = {},
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
          maxFileBytes: ingest.maxFileBytes,
          retention: ingest.retention,
        });
        const bound = await listener.listen(listen.host, listen.port);
        controller.metrics.addSource(() => syslogMetricLines(listener.stats()));
        const workerHost = controller.endpoints
          ? parseHostPort(controller.endpoints.worker).host
          : '127.0.0.1';
        const host = isWildcardHost(bound.address) ? workerHost : bound.address;
        const endpoint = formatHostPort(host, bound.port);
        controller.advertise('syslog', endpoint);
        return { endpoint, close: () => listener.close() };
      },
    },
  ];
}

/** Bursts allowed, as multiples of the sustained rates. */
const HEARTBEAT_BURST_FACTOR = 5;
const HEARTBEAT_BYTES_BURST_FACTOR = 16;
const SIZE_UNITS: Record<string, number> = { '': 1, KiB: 1024, MiB: 1024 * 1024 };

function positive(flag: string, text: string, parse: (t: string) => number): number {
  let value: number;
  try {
    value = parse(text);
  } catch (e: unknown) {
    throw new CliExit(EXIT_USAGE, `${flag}: ${e instanceof Error ? e.message : String(e)}`);
  }
  if (!(Number.isFinite(value) && value > 0)) throw new CliExit(EXIT_USAGE, `${flag} must be positive`);
  return value;
}

const parseSize = (text: string): number => {
  const m = /^(\d+)(KiB|MiB)?$/.exec(text.trim());
  if (!m)
    throw new CorralError(
      ErrorCode.VALIDATION,
      `expected bytes like 65536, 64KiB or 1MiB, got ${JSON.stringify(text)}`,
    );
  return Number(m[1]) * (SIZE_UNITS[m[2] ?? ''] ?? 1);
};

/** The per-host heartbeat budget from `--heartbeat-rate` and `--heartbeat-bytes`. */
function heartbeatBudget(rate: string, bytes: string): HeartbeatBudgetLimits {
  const perSecond = positive('--heartbeat-rate', rate, Number);
  const bytesPerSecond = positive('--heartbeat-bytes', bytes, parseSize);
  const limits = {
    perSecond,
    burst: Math.max(1, Math.round(perSecond * HEARTBEAT_BURST_FACTOR)),
    bytesPerSecond,
    burstBytes: Math.max(MAX_WORKER_BODY_BYTES, bytesPerSecond * HEARTBEAT_BYTES_BURST_FACTOR),
  };
  try {
    checkHeartbeatBudget(limits);
  } catch (e: unknown) {
    throw new CliExit(EXIT_USAGE, e instanceof Error ? e.message : String(e));
  }
  return limits;
}

const DATABASE_HELP =
  'the database: sqlite:PATH or postgres://USER@HOST:PORT/NAME (default: corral.db in the state dir)';

/** `--database` (or the config's `database`) as a target; exit 2 when it is neither kind. */
function databaseOption(text: string | undefined): DatabaseTarget | undefined {
  if (text === undefined) return undefined;
  try {
    return parseDatabaseTarget(text);
  } catch (e: unknown) {
    throw new CliExit(EXIT_USAGE, e instanceof Error ? e.message : String(e));
  }
}

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
      .option('--database <target>', DATABASE_HELP)
      .option('--config <file>', 'controller config file (YAML; default: $CORRAL_CONFIG): its database')
      .option('--json', 'print JSON'),
  ).action(
    async (opts: {
      stateDir?: string;
      address: string[];
      reinitialize?: boolean;
      database?: string;
      config?: string;
      json?: boolean;
    }) => {
      const loaded = await loadControllerConfig(configPath(opts.config));
      const database = databaseOption(opts.database ?? loaded.database);
      const result = await initControllerState({
        stateDir: controllerStateDir(opts.stateDir ?? loaded.stateDir),
        addresses: opts.address,
        reinitialize: opts.reinitialize === true,
        ...(database && { database }),
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
    },
  );

  addStateDirOption(
    controller
      .command('serve')
      .description('serve the admin API (operators) and the worker API (mutual TLS)')
      .option(
        '--admin-listen <host:port>',
        'admin API (plain HTTP: loopback only, unless --admin-tls)',
        DEFAULT_ADMIN_LISTEN,
      )
      .option(
        '--admin-tls [mode]',
        'serve the admin API over TLS with the server certificate: pinned operator certificates, or with =token bearer tokens',
      )
      .option('--worker-listen <host:port>', 'worker API (mutual TLS)', DEFAULT_WORKER_LISTEN)
      .option(
        '--advertise <host>',
        "the name or IP workers dial this controller at (one of init's --address; default: the first)",
      )
      .option(
        '--join-listen <host:port>',
        'join listener (TLS, no client certificate; default: worker port + 1)',
      )
      .option(
        '--syslog-listen <host:port>',
        `syslog-over-TLS listener (default: the worker host, port ${DEFAULT_SYSLOG_PORT}; port 0 when the worker port is 0)`,
      )
      .option(
        '--join-allowed-cidr <cidr>',
        'joining workers may claim only addresses in this CIDR (IPv4 or IPv6; repeatable; default: any address)',
        collect,
        [],
      )
      .option(
        '--heartbeat-interval <duration>',
        'expected heartbeat interval; liveness derives from it',
        '30s',
      )
      .option(
        '--heartbeat-rate <per-second>',
        `heartbeats one host may send per second (bursts of ${HEARTBEAT_BURST_FACTOR}x); over it: 429`,
        String(DEFAULT_HEARTBEAT_BUDGET.perSecond),
      )
      .option(
        '--heartbeat-bytes <size>',
        `heartbeat bytes one host may send per second (bursts of ${HEARTBEAT_BYTES_BURST_FACTOR}x), e.g. 64KiB`,
        `${DEFAULT_HEARTBEAT_BUDGET.bytesPerSecond / 1024}KiB`,
      )
      .option('--no-heartbeat-budget', 'no per-host heartbeat budget (benchmarks)')
      .option(
        '--event-max-age <duration>',
        'lifecycle events older than this are deleted',
        `${DEFAULT_EVENT_RETENTION.maxAgeMs / 86_400_000}d`,
      )
      .option(
        '--events-per-host <n>',
        'lifecycle events kept per host (the newest)',
        String(DEFAULT_EVENT_RETENTION.maxPerHost),
      )
      .option(
        '--fleet-event-max-age <duration>',
        'fleet events (controller events) and finished webhook deliveries older than this are deleted',
        `${DEFAULT_FLEET_EVENT_RETENTION.maxAgeMs / 86_400_000}d`,
      )
      .option(
        '--fleet-events-max <n>',
        'fleet events kept (the newest)',
        String(DEFAULT_FLEET_EVENT_RETENTION.maxCount),
      )
      .option(
        '--logs-max-file-mb <n>',
        "a host's ingest file is rotated once it holds this many MiB",
        String(DEFAULT_INGEST_MAX_FILE_BYTES / 1024 / 1024),
      )
      .option(
        '--logs-keep-days <n>',
        'rotated ingest files last written longer ago than this many days are deleted',
        String(DEFAULT_INGEST_RETENTION.keepMs / 86_400_000),
      )
      .option(
        '--logs-keep-files <n>',
        'rotated ingest files kept per host (the newest)',
        String(DEFAULT_INGEST_RETENTION.keepFiles),
      )
      .option(
        '--reschedule-after <duration>',
        "how long a host may be offline before its services are placed elsewhere ('off': only decommissioning moves them)",
        '5m',
      )
      .option(
        '--min-healthy <duration>',
        "a deploy's host succeeds once its services have run this long without a break ('0': as soon as the agent accepts)",
        '10s',
      )
      .option(
        '--retry-cooldown <duration>',
        'how long after a service failed (its agent gave up) the controller tries it again',
        '120s',
      )
      .option('--retry-max <n>', 'tries of a failed service before it is escalated', '5')
      .option('--log-level <level>', 'pino log level', 'info')
      .option('--config <file>', 'controller config file (YAML; default: $CORRAL_CONFIG); flags win over it')
      .option('--database <target>', DATABASE_HELP)
      .option(
        '--backup-dir <dir>',
        'write encrypted backups into DIR (0700): on --backup-every and before each decommission and teardown of everything',
      )
      .option(
        '--backup-passphrase-file <file>',
        "the backups' passphrase: the first line of FILE (must be 0600; read at start)",
      )
      .option(
        '--backup-every <duration>',
        'a backup every DURATION (e.g. 6h); without it, only before destructive actions',
      )
      .option(
        '--backup-keep <n>',
        `backups kept in --backup-dir, the newest (default ${DEFAULT_BACKUP_KEEP})`,
      )
      .option(
        '--cluster-resync <duration>',
        'with several controllers on one PostgreSQL database: how often all shared state is read again anyway (changes are announced at once; this catches one missed while the link was down)',
        `${DEFAULT_RESYNC_MS / 1000}s`,
      )
      .option('--reinitialize', `${REINITIALIZE_HELP}, then serve`),
  ).action(
    async (
      given: {
        config?: string;
        stateDir?: string;
        adminListen: string;
        adminTls?: string | boolean;
        workerListen: string;
        advertise?: string;
        joinListen?: string;
        syslogListen?: string;
        joinAllowedCidr: string[];
        heartbeatInterval: string;
        heartbeatRate: string;
        heartbeatBytes: string;
        heartbeatBudget: boolean;
        eventMaxAge: string;
        eventsPerHost: string;
        fleetEventMaxAge: string;
        fleetEventsMax: string;
        logsMaxFileMb: string;
        logsKeepDays: string;
        logsKeepFiles: string;
        logLevel: string;
        rescheduleAfter: string;
        minHealthy: string;
        retryCooldown: string;
        retryMax: string;
        reinitialize?: boolean;
        database?: string;
        backupDir?: string;
        backupPassphraseFile?: string;
        backupEvery?: string;
        backupKeep?: string;
        clusterResync: string;
      },
      cmd: Command,
    ) => {
      const file = configPath(given.config);
      const loaded = await loadControllerConfig(file);
      const c = loaded.controller ?? {};
      const logsFile = loaded.logs ?? {};
      const { expireAfter, update, ...counts } = loaded.approvals ?? {};
      const policy = {
        ...counts,
        ...(update !== undefined && { update: typeof update === 'number' ? update : update.count }),
      };
      const updateAllOnly = typeof update === 'object' && update.all === true;
      const fromFile = (name: string, value: string | undefined): string | undefined =>
        cmd.getOptionValueSource(name) === 'cli' ? undefined : value;
      const opts = {
        ...given,
        stateDir: given.stateDir ?? (file ? (await loadControllerConfig(file)).stateDir : undefined),
        adminListen: fromFile('adminListen', c.adminListen) ?? given.adminListen,
        workerListen: fromFile('workerListen', c.workerListen) ?? given.workerListen,
        joinListen: given.joinListen ?? c.joinListen,
        advertise: given.advertise ?? c.advertise,
        syslogListen: given.syslogListen ?? c.syslogListen,
        joinAllowedCidr:
          given.joinAllowedCidr.length > 0 ? given.joinAllowedCidr : (c.joinAllowedCidrs ?? []),
        heartbeatInterval:
          fromFile(
            'heartbeatInterval',
            c.heartbeatInterval !== undefined ? `${c.heartbeatInterval}ms` : undefined,
          ) ?? given.heartbeatInterval,
        heartbeatRate:
          fromFile('heartbeatRate', c.heartbeatRate !== undefined ? String(c.heartbeatRate) : undefined) ??
          given.heartbeatRate,
        heartbeatBytes: fromFile('heartbeatBytes', c.heartbeatBytes) ?? given.heartbeatBytes,
        eventMaxAge:
          fromFile('eventMaxAge', c.eventMaxAge !== undefined ? `${c.eventMaxAge}ms` : undefined) ??
          given.eventMaxAge,
        eventsPerHost:
          fromFile('eventsPerHost', c.eventsPerHost !== undefined ? String(c.eventsPerHost) : undefined) ??
          given.eventsPerHost,
        fleetEventMaxAge:
          fromFile(
            'fleetEventMaxAge',
            c.fleetEventMaxAge !== undefined ? `${c.fleetEventMaxAge}ms` : undefined,
          ) ?? given.fleetEventMaxAge,
        fleetEventsMax:
          fromFile('fleetEventsMax', c.fleetEventsMax !== undefined ? String(c.fleetEventsMax) : undefined) ??
          given.fleetEventsMax,
        logsMaxFileMb: fromFile('logsMaxFileMb', optionalString(logsFile.max_file_mb)) ?? given.logsMaxFileMb,
        logsKeepDays: fromFile('logsKeepDays', optionalString(logsFile.keep_days)) ?? given.logsKeepDays,
        logsKeepFiles: fromFile('logsKeepFiles', optionalString(logsFile.keep_files)) ?? given.logsKeepFiles,
        logLevel: fromFile('logLevel', c.logLevel) ?? given.logLevel,
        rescheduleAfter: fromFile('rescheduleAfter', c.rescheduleAfter) ?? given.rescheduleAfter,
        minHealthy:
          fromFile('minHealthy', c.minHealthy !== undefined ? `${c.minHealthy}ms` : undefined) ??
          given.minHealthy,
        retryCooldown:
          fromFile('retryCooldown', c.retryCooldown !== undefined ? `${c.retryCooldown}ms` : undefined) ??
          given.retryCooldown,
        retryMax: fromFile('retryMax', optionalString(c.retryMax)) ?? given.retryMax,
        clusterResync:
          fromFile(
            'clusterResync',
            loaded.cluster?.resync !== undefined ? `${loaded.cluster.resync}ms` : undefined,
          ) ?? given.clusterResync,
      };
      const stateDir = controllerStateDir(opts.stateDir);
      const database = databaseOption(given.database ?? loaded.database);
      const admin = hostPortOption('--admin-listen', opts.adminListen);
      const adminTls =
        opts.adminTls === undefined
          ? undefined
          : opts.adminTls === true || opts.adminTls === 'cert'
            ? ('cert' as const)
            : opts.adminTls === 'token'
              ? ('token' as const)
              : undefined;
      if (opts.adminTls !== undefined && adminTls === undefined) {
        throw new CliExit(
          EXIT_USAGE,
          `--admin-tls takes cert (the default) or token, not ${String(opts.adminTls)}`,
        );
      }
      const worker = hostPortOption('--worker-listen', opts.workerListen);
      const join = opts.joinListen
        ? hostPortOption('--join-listen', opts.joinListen)
        : { host: worker.host, port: worker.port === 0 ? 0 : worker.port + 1 };
      const syslog = opts.syslogListen
        ? hostPortOption('--syslog-listen', opts.syslogListen)
        : { host: worker.host, port: worker.port === 0 ? 0 : DEFAULT_SYSLOG_PORT };
      // One object for everything about joins, so a config file can feed it later.
      const joinPolicy: JoinPolicyOptions = { allowedCidrs: opts.joinAllowedCidr };
      for (const cidr of joinPolicy.allowedCidrs) {
        try {
          parseCidr(cidr);
        } catch (e: unknown) {
          throw new CliExit(EXIT_USAGE, `--join-allowed-cidr: ${e instanceof Error ? e.message : String(e)}`);
        }
      }
      let heartbeatIntervalMs: number;
      try {
        heartbeatIntervalMs = parseDurationMs(opts.heartbeatInterval);
      } catch (e: unknown) {
        throw new CliExit(EXIT_USAGE, `--heartbeat-interval: ${e instanceof Error ? e.message : String(e)}`);
      }
      let rescheduleAfterMs: number | null = null;
      if (opts.rescheduleAfter !== 'off') {
        try {
          rescheduleAfterMs = parseDurationMs(opts.rescheduleAfter);
        } catch (e: unknown) {
          throw new CliExit(
            EXIT_USAGE,
            `--reschedule-after: ${e instanceof Error ? e.message : String(e)} (or 'off')`,
          );
        }
      }
      let minHealthyMs: number;
      try {
        minHealthyMs = parseDurationOrZeroMs(opts.minHealthy);
      } catch (e: unknown) {
        throw new CliExit(EXIT_USAGE, `--min-healthy: ${e instanceof Error ? e.message : String(e)}`);
      }
      if (minHealthyMs > MAX_MIN_HEALTHY_MS) throw new CliExit(EXIT_USAGE, '--min-healthy may be at most 1h');
      const retryCooldownMs = positive('--retry-cooldown', opts.retryCooldown, parseDurationMs);
      const resyncMs = positive('--cluster-resync', opts.clusterResync, parseDurationMs);
      const maxRetries = Number(opts.retryMax);
      if (!Number.isInteger(maxRetries) || maxRetries < 0 || maxRetries > 1000) {
        throw new CliExit(EXIT_USAGE, `--retry-max must be an integer from 0 to 1000, got ${opts.retryMax}`);
      }
      const budget = opts.heartbeatBudget
        ? heartbeatBudget(opts.heartbeatRate, opts.heartbeatBytes)
        : ('unlimited' as const);
      const maxAgeMs = positive('--event-max-age', opts.eventMaxAge, parseDurationMs);
      const maxPerHost = positive('--events-per-host', opts.eventsPerHost, Number);
      if (!Number.isSafeInteger(maxPerHost))
        throw new CliExit(EXIT_USAGE, '--events-per-host must be a whole number');
      const fleetMaxAgeMs = positive('--fleet-event-max-age', opts.fleetEventMaxAge, parseDurationMs);
      const fleetMaxCount = positive('--fleet-events-max', opts.fleetEventsMax, Number);
      if (!Number.isSafeInteger(fleetMaxCount))
        throw new CliExit(EXIT_USAGE, '--fleet-events-max must be a whole number');
      const wholeNumber = (flag: string, text: string): number => {
        const n = positive(flag, text, Number);
        if (!Number.isSafeInteger(n)) throw new CliExit(EXIT_USAGE, `${flag} must be a whole number`);
        return n;
      };
      const ingest = {
        maxFileBytes: wholeNumber('--logs-max-file-mb', opts.logsMaxFileMb) * 1024 * 1024,
        retention: {
          keepMs: wholeNumber('--logs-keep-days', opts.logsKeepDays) * 86_400_000,
          keepFiles: wholeNumber('--logs-keep-files', opts.logsKeepFiles),
        },
      };
      const backupFile = loaded.backup ?? {};
      const backups = await backupConfigFrom({
        dir: given.backupDir ?? backupFile.dir,
        passphraseFile: given.backupPassphraseFile ?? backupFile.passphraseFile,
        every: given.backupEvery ?? (backupFile.every !== undefined ? `${backupFile.every}ms` : undefined),
        keep: given.backupKeep ?? optionalString(backupFile.keep),
      });
      const log = pino({
        level: opts.logLevel,
        redact: [...LOG_REDACT_PATHS],
        base: { process: 'controller' },
      });
      if (opts.reinitialize) {
        const result = await initControllerState({
          stateDir,
          reinitialize: true,
          ...(database && { database }),
        });
        io.err(reinitializeReport(result));
        if (result.reinitialized.length > 0) {
          log.warn({ replaced: result.reinitialized.map((r) => r.file) }, 'state reinitialized');
        }
      }
      // Signals are ours before anything listens: a SIGTERM right after the endpoints file
      // appears still runs the shutdown below instead of killing the process mid-write.
      const shutdown = listenForShutdown({
        forceOnSecondSignal: true,
        onSignal: (signal, count) => {
          if (count === 1) log.info({ signal }, 'shutting down');
        },
      });
      let serving: Awaited<ReturnType<typeof serveController>>;
      try {
        serving = await serveController({
          stateDir,
          database,
          admin,
          worker,
          join,
          log,
          heartbeatIntervalMs,
          schedule: { rescheduleAfterMs, retry: { cooldownMs: retryCooldownMs, maxRetries } },
          deploy: { minHealthyMs },
          joinPolicy,
          heartbeatBudget: budget,
          eventRetention: { maxAgeMs, maxPerHost },
          fleetEvents: { retention: { maxAgeMs: fleetMaxAgeMs, maxCount: fleetMaxCount } },
          extras: controllerExtraListeners(stateDir, syslog, log, ingest),
          adminTls,
          approvals: { policy, ttlMs: expireAfter, updateAllOnly },
          // The dashboard this installation built (npm run build, or a release's copy).
          dashboardDir: dashboardDir(),
          backups,
          advertiseHost: opts.advertise,
          cluster: { resyncMs },
        });
      } catch (e: unknown) {
        shutdown.dispose();
        throw e;
      }
      // `STATE/run/controller.pid`: found by `controller install` (is it running?) and by
      // operators; removed on stop.
      const pidFile = await claimPidFile(stateDir, 'controller', { exclusive: false });
      if (joinPolicy.allowedCidrs.length > 0)
        log.info({ allowedCidrs: joinPolicy.allowedCidrs }, 'joins may claim only these addresses');
      // The controller runs its own phases (controller/serve.ts); this waits for them once.
      let outcomes: readonly PhaseOutcome[] = [];
      const result = await shutdown.wait([
        {
          name: 'controller',
          run: async () => void (outcomes = await serving.close()),
          timeoutMs: CONTROLLER_CLOSE_TIMEOUT_MS,
        },
      ]);
      const failed = [...settleShutdown(log, result), ...outcomes.filter((o) => !o.ok)];
      for (const o of outcomes.filter((x) => !x.ok))
        log.error({ phase: o.name, timedOut: o.timedOut ?? false, err: o.error }, 'shutdown phase failed');
      await pidFile.release();
      log.info({ phases: outcomes.length, failed: failed.length }, 'stopped');
      await new Promise<void>((resolve) => log.flush(() => resolve()));
      if (failed.length > 0)
        throw new CliExit(EXIT_FAILURE, `shutdown incomplete: ${failed.map((o) => o.name).join(', ')}`);
    },
  );
}

import { readFile, unlink } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { Option, type Command } from 'commander';
import type { Reinitialized, SelfDestructConfig } from '../../agent/index.js';
import {
  DEFAULT_AGENT_PORT,
  parseJsonWith,
  RELEASE_VERSION_ENV,
  RELEASE_VERSION_RE,
  WORKER_LOG_FILE,
} from '../../protocol/index.js';
import { AGENT_INSTANCE_ENV, INSTANCE_TOKEN_RE } from '../../protocol/pid-file.js';
import { createDaemonLogger } from '../daemon-logger.js';
import { listenForShutdown } from '../../kit/shutdown.js';
import { configPath } from '../config/config-file.js';
import { durationFlag, loadWorkerConfig, type WorkerConfig } from '../config/worker-config.js';
import { refuseOldSpellings } from '../config/old-flags.js';
import { runningRelease } from '../installation.js';
import { CliExit, EXIT_FAILURE, EXIT_USAGE } from '../exit.js';
import { settleShutdown } from '../shutdown-result.js';
import { renderJson, renderRecord, type Output } from '../output.js';
import { hostPortOption, loadWorkerIdentity } from '../worker-bundle.js';
import { registerAgentJoinCommand } from './agent-join.js';

/** The agent's modules load only for the agent's own commands. */
const agentLib = () => import('../../agent/index.js');
const collect = (value: string, previous: string[]): string[] => [...previous, value];

function int(value: string | undefined, name: string): number | undefined {
  if (value === undefined) return undefined;
  if (!/^\d{1,12}$/.test(value)) throw new CliExit(EXIT_USAGE, `${name} must be a whole number`);
  return Number(value);
}

interface CommonOptions {
  config?: string;
  stateDir?: string;
  logFile?: string;
  installDir: string[];
  extraDir: string[];
  keepDir: string[];
  unit: string[];
}

interface ServeOptions extends CommonOptions {
  listen?: string;
  logLevel?: string;
  systemd: boolean;
  heartbeatInterval?: string;
  heartbeatMinInterval?: string;
  backoffBase?: string;
  backoffCap?: string;
  renewBefore?: string;
  maxRestarts?: string;
  restartWindow?: string;
  restartBase?: string;
  adoptPoll?: string;
  logPoll?: string;
  stopGrace?: string;
  containerSocket?: string;
  volumeDir: string[];
  workingDir: string[];
  concurrency?: string;
  reinitialize?: boolean;
}

/** The agent's duration flags, once written `--NAME-ms <n>`: the old spelling is refused. */
const AGENT_DURATION_FLAGS = [
  'heartbeat-interval',
  'heartbeat-min-interval',
  'backoff-base',
  'backoff-cap',
  'renew-before',
  'restart-window',
  'restart-base',
  'adopt-poll',
  'log-poll',
  'stop-grace',
] as const;

function withCommon(cmd: Command): Command {
  return cmd
    .option('--config <file>', 'worker config file (YAML; default: $CORRAL_CONFIG); flags win over it')
    .option(
      '--state-dir <dir>',
      "agent state dir (holds bundle/, services/, logs/); default: the config's stateDir",
    )
    .option('--log-file <path>', `worker RFC 5424 log (default: <state-dir>/${WORKER_LOG_FILE})`)
    .option('--install-dir <dir>', 'Corral install dir that self-destruct deletes (repeatable)', collect, [])
    .option('--extra-dir <dir>', 'other Corral dir that self-destruct deletes (repeatable)', collect, [])
    .option('--keep-dir <dir>', 'dir self-destruct keeps besides the log dir (repeatable)', collect, [])
    .option(
      '--unit <name>',
      'systemd unit of a Corral daemon that self-destruct stops (repeatable)',
      collect,
      [],
    );
}

/** The state dir from the flag, else the config file; neither is a usage error. */
export function stateDirOf(flag: string | undefined, config: WorkerConfig, file: string | undefined): string {
  const dir = flag ?? config.stateDir;
  if (dir === undefined)
    throw new CliExit(
      EXIT_USAGE,
      file
        ? `give --state-dir, or stateDir in ${file}`
        : 'give --state-dir, or a config file with stateDir (--config)',
    );
  return resolve(dir);
}

/** A repeatable flag wins over the config's list when given at least once. */
const listOf = (flag: string[], fromConfig: string[] | undefined): string[] =>
  flag.length > 0 ? flag.map((d) => resolve(d)) : [...(fromConfig ?? [])];

function selfDestructConfig(
  o: CommonOptions,
  config: WorkerConfig,
  file: string | undefined,
): SelfDestructConfig & { logFile: string } {
  const stateDir = stateDirOf(o.stateDir, config, file);
  const a = config.agent ?? {};
  const logFile = resolve(o.logFile ?? a.logFile ?? join(stateDir, WORKER_LOG_FILE));
  return {
    stateDir,
    installDirs: listOf(o.installDir, a.installDirs),
    extraDirs: listOf(o.extraDir, a.extraDirs),
    keepDirs: [dirname(logFile), ...listOf(o.keepDir, a.keepDirs)],
    units: o.unit.length > 0 ? o.unit : [...(a.units ?? [])],
    logFile,
  };
}

/**
 * The agent's version, learned by itself: the manifest of the release it runs from (so an agent
 * a service manager started reports the right one), else what the updater passed, else the
 * package's. The heartbeat schema takes release versions only.
 */
function agentVersion(fallback: string): string {
  const fromRelease = runningRelease().version;
  if (fromRelease !== undefined) return fromRelease;
  const fromEnv = process.env[RELEASE_VERSION_ENV];
  return fromEnv !== undefined && RELEASE_VERSION_RE.test(fromEnv) ? fromEnv : fallback;
}

/** What `agent serve --reinitialize` replaced and destroyed, for stderr. */
function reinitializeReport(replaced: readonly Reinitialized[]): string {
  if (replaced.length === 0) return 'corral: --reinitialize: nothing to replace; the state is whole\n';
  const lines = ['corral: --reinitialize replaced:'];
  for (const r of replaced) {
    lines.push(`  ${r.file} (${r.problem})${r.movedTo ? `: moved to ${r.movedTo}` : ''}`);
  }
  lines.push('and destroyed:', ...[...new Set(replaced.map((r) => r.destroyed))].map((d) => `  - ${d}`));
  return `${lines.join('\n')}\n`;
}

async function serve(o: ServeOptions, systemdFlag: boolean, version: string, io: Output): Promise<void> {
  const file = configPath(o.config);
  const config = await loadWorkerConfig(file);
  const a = config.agent ?? {};
  const stateDir = stateDirOf(o.stateDir, config, file);
  const { manifest } = (await loadWorkerIdentity(stateDir, 'agent')).bundle;
  const listen = hostPortOption(
    '--listen',
    o.listen ?? a.listen ?? `0.0.0.0:${manifest.agentPort || DEFAULT_AGENT_PORT}`,
  );
  const sd = selfDestructConfig(o, config, file);
  // Its own log goes home too, as `corral-agent` lines in the worker log the forwarder ships.
  const logger = createDaemonLogger({
    name: 'corral-agent',
    level: o.logLevel ?? a.logLevel ?? 'info',
    workerLog: sd.logFile,
    hostname: manifest.hostName,
  });
  const { log } = logger;
  const ms = (flag: string, value: string | undefined): number | undefined =>
    value === undefined ? undefined : durationFlag(flag, value);
  const heartbeatIntervalMs = ms('--heartbeat-interval', o.heartbeatInterval) ?? a.heartbeatIntervalMs;
  const stopGraceMs = ms('--stop-grace', o.stopGrace) ?? a.stopGraceMs;
  const concurrency = int(o.concurrency, '--concurrency') ?? a.concurrency;
  const systemd = systemdFlag ? o.systemd : (a.systemd ?? true);
  const script = process.argv[1];
  const { createAgent } = await agentLib();
  // The first signal starts the drain; a second one ends the wait for it (the CLI entry then
  // exits), however long a service's stop grace still has to run. Taken before the agent
  // listens, so a signal while it starts is honoured once it has.
  const shutdown = listenForShutdown({
    forceOnSecondSignal: true,
    onSignal: (signal) => log.info({ signal }, 'agent stopping'),
  });
  const instance = process.env[AGENT_INSTANCE_ENV];
  const agent = await createAgent({
    stateDir,
    listen,
    version,
    ...(instance !== undefined && INSTANCE_TOKEN_RE.test(instance) ? { instance } : {}),
    log,
    logFile: sd.logFile,
    baseEnv: { PATH: process.env.PATH ?? '/usr/local/bin:/usr/bin:/bin' },
    heartbeat: {
      intervalMs: heartbeatIntervalMs,
      ...(o.heartbeatMinInterval && {
        minIntervalMs: ms('--heartbeat-min-interval', o.heartbeatMinInterval),
      }),
      ...(o.backoffBase && { backoffBaseMs: ms('--backoff-base', o.backoffBase) }),
      ...(o.backoffCap && { backoffCapMs: ms('--backoff-cap', o.backoffCap) }),
      ...(o.renewBefore && { renewBeforeMs: ms('--renew-before', o.renewBefore) }),
    },
    restart: {
      ...(o.maxRestarts && { maxRestarts: int(o.maxRestarts, '--max-restarts') }),
      ...(o.restartWindow && { windowMs: ms('--restart-window', o.restartWindow) }),
      ...(o.restartBase && { baseDelayMs: ms('--restart-base', o.restartBase) }),
    },
    ...(o.adoptPoll && { adoptPollMs: ms('--adopt-poll', o.adoptPoll) }),
    ...(o.logPoll && { logPollMs: ms('--log-poll', o.logPoll) }),
    defaultStopGraceMs: stopGraceMs,
    ...(concurrency !== undefined && { concurrency: Math.max(1, concurrency) }),
    reinitialize: o.reinitialize === true,
    allowedWorkingDirs: listOf(o.workingDir, a.workingDirs),
    containers: {
      socket: o.containerSocket ? resolve(o.containerSocket) : a.containerSocket,
      allowedVolumeDirs: listOf(o.volumeDir, a.volumeDirs),
    },
    selfDestruct: {
      installDirs: sd.installDirs,
      extraDirs: sd.extraDirs,
      keepDirs: sd.keepDirs,
      units: sd.units,
      systemd: systemd ? 'auto' : 'never',
      ...(script && { reaperCommand: [process.execPath, resolve(script), 'agent', 'reap', '--plan'] }),
    },
  }).catch(async (e: unknown) => {
    shutdown.dispose();
    await logger.close();
    throw e;
  });

  if (o.reinitialize) io.err(reinitializeReport(agent.reinitialized));

  const result = await shutdown.wait([
    { name: 'agent', run: () => agent.close(), timeoutMs: 30_000 },
    { name: 'close its log in the worker log', run: () => logger.close(), timeoutMs: 5_000 },
  ]);
  settleShutdown(log, result);
  log.flush();
}

async function selfDestruct(
  o: CommonOptions & { dryRun?: boolean; yes?: boolean; json?: boolean },
  io: Output,
): Promise<void> {
  if (!o.dryRun && !o.yes)
    throw new CliExit(EXIT_USAGE, 'pass --dry-run to list what would go, or --yes to do it here');
  const file = configPath(o.config);
  const config = selfDestructConfig(o, await loadWorkerConfig(file), file);
  const { planFromDisk, runReaper, serviceDirs, DEFAULT_STOP_GRACE_MS } = await agentLib();
  const plan = await planFromDisk(
    config.stateDir,
    config,
    serviceDirs(join(config.stateDir, 'services')),
    DEFAULT_STOP_GRACE_MS,
  );
  if (o.dryRun) {
    const view = {
      dryRun: true,
      agent: plan.agent ? plan.agent.pid : null,
      daemons: plan.daemons.map((d) => `${d.name} (pid ${d.process.pid})`),
      services: plan.services.map(
        (s) =>
          `${s.name} (${s.ref.kind === 'process' ? `pid ${s.ref.pid}` : `container ${s.ref.id.slice(0, 12)} ${s.ref.name}`})`,
      ),
      units: plan.units,
      delete: plan.deleteDirs,
      keep: plan.keepDirs,
    };
    io.out(
      o.json
        ? renderJson(view)
        : renderRecord([
            ['agent pid', view.agent],
            ['stop daemons', view.daemons.join(', ') || null],
            ['stop services', view.services.join(', ') || null],
            ['stop units', view.units.join(', ') || null],
            ['delete', view.delete.join(', ')],
            ['keep', view.keep.join(', ')],
          ]),
    );
    return;
  }
  const report = await runReaper(plan);
  io.out(renderJson(report));
  if (report.errors.length > 0)
    throw new CliExit(EXIT_FAILURE, `self-destruct finished with ${report.errors.length} errors`);
}

/** `corral agent …`. */
export function registerAgentCommands(program: Command, io: Output): Command {
  const agent = program.command('agent').description('run the worker agent that supervises services');
  registerAgentJoinCommand(agent, io);

  const serveCmd = withCommon(
    agent
      .command('serve')
      .description('serve the agent API (mTLS, controller only), supervise services, send heartbeats'),
  )
    .option(
      '--listen <host:port>',
      'address to listen on (default 0.0.0.0:<agent port in the bundle>; port 0 picks one)',
    )
    .option('--log-level <level>', 'pino log level (default info)')
    .option('--no-systemd', 'never start the self-destruct reaper through systemd-run')
    .option(
      '--reinitialize',
      'replace state files that are missing or damaged (moved aside as *.damaged-TIME), saying what that destroys',
    )
    .option('--heartbeat-interval <duration>', 'heartbeat interval before the controller sets one (30s)')
    .option(
      '--container-socket <path>',
      'container engine socket for runtime: container (default: DOCKER_HOST, else /var/run/docker.sock)',
    )
    .option('--volume-dir <dir>', 'host dir container bind mounts may come from (repeatable)', collect, [])
    .option('--working-dir <dir>', 'dir a process service workingDir may lie in (repeatable)', collect, []);
  for (const [flag, help] of [
    ['--heartbeat-min-interval <duration>', 'shortest heartbeat interval honoured'],
    ['--backoff-base <duration>', 'first backoff while the controller is down'],
    ['--backoff-cap <duration>', 'longest backoff while the controller is down'],
    ['--renew-before <duration>', 'renew the certificate this long before it expires'],
    ['--max-restarts <n>', 'restarts in the window before a service is failed'],
    ['--restart-window <duration>', 'crash-loop window'],
    ['--restart-base <duration>', 'first restart backoff'],
    ['--adopt-poll <duration>', 'how often re-adopted processes are checked'],
    ['--log-poll <duration>', 'how often service output is copied to the worker log'],
    ['--stop-grace <duration>', 'default time between SIGTERM and SIGKILL'],
    ['--concurrency <n>', 'services started or stopped at once by a reconcile'],
  ] as const) {
    serveCmd.addOption(new Option(flag, help).hideHelp());
  }
  refuseOldSpellings(serveCmd, AGENT_DURATION_FLAGS);
  serveCmd.action(async (opts: ServeOptions, cmd: Command) => {
    const systemdFlag = cmd.getOptionValueSource('systemd') === 'cli';
    await serve(opts, systemdFlag, agentVersion(cmd.parent?.parent?.version() ?? '0.0.0'), io);
  });

  withCommon(
    agent.command('self-destruct').description('list (--dry-run) or carry out what a self-destruct removes'),
  )
    .option('--dry-run', 'only list what would be stopped and deleted')
    .option('--yes', 'stop everything and delete the directories now')
    .option('--json', 'print JSON')
    .action(async (opts: CommonOptions & { dryRun?: boolean; yes?: boolean; json?: boolean }) => {
      await selfDestruct(opts, io);
    });

  agent
    .command('reap', { hidden: true })
    .description('carry out a self-destruct plan (started by the agent)')
    .requiredOption('--plan <file>', 'plan written by the agent')
    .action(async (opts: { plan: string }) => {
      const text = await readFile(opts.plan, 'utf8');
      await unlink(opts.plan).catch(() => undefined /* ENOENT: already removed */);
      const { ReaperPlan, runReaper } = await agentLib();
      const plan = parseJsonWith(ReaperPlan, text, 'reaper plan', 4 * 1024 * 1024);
      io.out(renderJson(await runReaper(plan)));
    });
  return agent;
}

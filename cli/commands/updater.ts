import { spawn } from 'node:child_process';
import { openSync, closeSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Command } from 'commander';
import type { Logger } from 'pino';
import {
  DEFAULT_MAX_RELEASE_BYTES,
  DEFAULT_UPDATER_LISTEN,
  RELEASE_VERSION_RE,
  UPDATER_VERSION_ENV,
  WORKER_LOG_FILE,
} from '../../protocol/index.js';
import { ErrorCode, isCorralError } from '../../protocol/errors.js';
import { controllerAddresses } from '../../pki/index.js';
import { createDaemonLogger } from '../daemon-logger.js';
import { claimPidFile, type PidFileClaim } from '../../kit/pid-file.js';
import { listenForShutdown } from '../../kit/shutdown.js';
import {
  createUpdater,
  DEFAULT_HEALTH_TIMEOUT_MS,
  DEFAULT_KEEP_RELEASES,
  DEFAULT_WATCH_MS,
  expandStart,
  PAUSE_PHASES,
  REINITIALIZE_DESTROYS,
  claimReleaseRoot,
  releaseLayout,
  type AgentRelease,
  type PausePhase,
  watchStanding,
} from '../../updater/index.js';
import { CONFIG_ENV, configPath } from '../config/config-file.js';
import { refuseOldSpellings } from '../config/old-flags.js';
import { durationFlag, loadWorkerConfig, type WorkerConfig } from '../config/worker-config.js';
import { CliExit, EXIT_FAILURE, EXIT_USAGE } from '../exit.js';
import type { Output } from '../output.js';
import { settleShutdown } from '../shutdown-result.js';
import { hostPortOption, loadWorkerIdentity } from '../worker-bundle.js';

/** How long closing the updater may take: it may stop the agent (SIGTERM, then SIGKILL). */
const UPDATER_CLOSE_TIMEOUT_MS = 60_000;
/** How often the updater asks the controller whether its host is still enrolled. */
const DEFAULT_STANDING_INTERVAL = '5m';

/** Test hook, read only here: `CORRAL_TEST_UPDATER_PAUSE=<phase>:<ms>` holds updates at a phase. */
const PAUSE_ENV = 'CORRAL_TEST_UPDATER_PAUSE';

interface ServeOptions {
  config?: string;
  stateDir?: string;
  root?: string;
  listen?: string;
  agentStateDir?: string;
  agentRestartCommand?: string;
  selfRestartCommand?: string;
  keep?: string;
  maxReleaseBytes?: string;
  healthTimeout?: string;
  watch?: string;
  standingInterval?: string;
  reinitialize?: boolean;
}

/** Everything `serve` runs with, flags over the config file over the defaults. */
interface Resolved {
  readonly configFile: string | undefined;
  readonly stateDir: string;
  readonly root: string;
  readonly listen: string;
  readonly agentStateDir: string;
  readonly agentRestartCommand: string[] | undefined;
  readonly selfRestartCommand: string[] | undefined;
  readonly keep: number;
  readonly maxReleaseBytes: number;
  readonly healthTimeoutMs: number;
  readonly watchMs: number;
  readonly standingMs: number;
  readonly superviseForwarder: boolean;
  readonly logLevel: string;
  /** The worker log the forwarder ships, where the updater's own lines go too. */
  readonly workerLog: string;
}

const words = (cmd: string | undefined): string[] | undefined =>
  cmd === undefined ? undefined : cmd.split(/\s+/).filter(Boolean);

function resolveServe(o: ServeOptions, config: WorkerConfig, configFile: string | undefined): Resolved {
  const u = config.updater ?? {};
  const stateDir = o.stateDir ?? config.stateDir;
  const root = o.root ?? u.root;
  const missing = (flag: string, key: string): never => {
    throw new CliExit(
      EXIT_USAGE,
      configFile ? `give ${flag}, or ${key} in ${configFile}` : `give ${flag} (or --config with ${key})`,
    );
  };
  if (stateDir === undefined) missing('--state-dir', 'stateDir');
  if (root === undefined) missing('--root', 'updater.root');
  return {
    configFile,
    stateDir: resolve(stateDir!),
    root: resolve(root!),
    listen: o.listen ?? u.listen ?? DEFAULT_UPDATER_LISTEN,
    agentStateDir: resolve(o.agentStateDir ?? u.agentStateDir ?? stateDir!),
    agentRestartCommand: words(o.agentRestartCommand) ?? u.agentRestartCommand,
    selfRestartCommand: words(o.selfRestartCommand) ?? u.selfRestartCommand,
    keep: o.keep !== undefined ? keepOption(o.keep) : (u.keep ?? DEFAULT_KEEP_RELEASES),
    maxReleaseBytes:
      o.maxReleaseBytes !== undefined
        ? positiveInt(o.maxReleaseBytes, '--max-release-bytes')
        : (u.maxReleaseBytes ?? DEFAULT_MAX_RELEASE_BYTES),
    healthTimeoutMs:
      o.healthTimeout !== undefined
        ? durationFlag('--health-timeout', o.healthTimeout)
        : (u.healthTimeoutMs ?? DEFAULT_HEALTH_TIMEOUT_MS),
    watchMs: o.watch !== undefined ? durationFlag('--watch', o.watch, true) : (u.watchMs ?? DEFAULT_WATCH_MS),
    standingMs: durationFlag('--standing-interval', o.standingInterval ?? DEFAULT_STANDING_INTERVAL),
    superviseForwarder: u.superviseForwarder ?? true,
    logLevel: u.logLevel ?? 'info',
    workerLog: resolve(
      config.agent?.logFile ??
        join(resolve(o.agentStateDir ?? u.agentStateDir ?? stateDir!), WORKER_LOG_FILE),
    ),
  };
}

function positiveInt(value: string, name: string): number {
  if (!/^\d{1,15}$/.test(value) || Number(value) < 1)
    throw new CliExit(EXIT_USAGE, `${name} must be a positive integer`);
  return Number(value);
}

/** `--keep`: the current release and its rollback target always stay, so at least 2. */
function keepOption(value: string): number {
  const keep = positiveInt(value, '--keep');
  if (keep < 2)
    throw new CliExit(
      EXIT_USAGE,
      '--keep must be at least 2 (the current release and the one a rollback goes to)',
    );
  return keep;
}

function pauseFromEnv(): ((phase: PausePhase) => Promise<void>) | undefined {
  const value = process.env[PAUSE_ENV];
  if (!value) return undefined;
  const [phase, ms] = value.split(':');
  if (!(PAUSE_PHASES as readonly string[]).includes(phase ?? '') || !/^\d+$/.test(ms ?? '')) {
    throw new CliExit(EXIT_USAGE, `${PAUSE_ENV} must be <${PAUSE_PHASES.join('|')}>:<ms>`);
  }
  return async (at) => {
    if (at === phase) await sleep(Number(ms));
  };
}

/** This updater's release version: set by the updater that started it, else the package's. */
function ownVersion(fallback: string): string {
  const fromEnv = process.env[UPDATER_VERSION_ENV];
  return fromEnv !== undefined && RELEASE_VERSION_RE.test(fromEnv) ? fromEnv : fallback;
}

/** The serve options a successor updater gets: this one's, resolved (the config file named). */
function serveArgs(r: Resolved): string[] {
  return [
    ...(r.configFile ? ['--config', r.configFile] : []),
    '--state-dir',
    r.stateDir,
    '--root',
    r.root,
    '--listen',
    r.listen,
    '--agent-state-dir',
    r.agentStateDir,
    ...(r.agentRestartCommand ? ['--agent-restart-command', r.agentRestartCommand.join(' ')] : []),
    ...(r.selfRestartCommand ? ['--self-restart-command', r.selfRestartCommand.join(' ')] : []),
    '--keep',
    String(r.keep),
    '--max-release-bytes',
    String(r.maxReleaseBytes),
    '--health-timeout',
    `${r.healthTimeoutMs}ms`,
    '--watch',
    `${r.watchMs}ms`,
  ];
}

/** The environment of every process the updater starts: its own, plus the config file. */
function childEnv(r: Resolved): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env };
  if (r.configFile) env[CONFIG_ENV] = r.configFile;
  return env;
}

/**
 * Starts the successor updater from its new release: the configured command (e.g. a service
 * manager restart), or the release's own updater start command with this updater's options,
 * detached, with output appended to ROOT/.updater/updater.log.
 */
function startSuccessor(r: Resolved, release: AgentRelease, log: Logger): void {
  const env: NodeJS.ProcessEnv = { ...childEnv(r), [UPDATER_VERSION_ENV]: release.version };
  delete env[PAUSE_ENV];
  const failed = (e: unknown): void =>
    log.error({ err: e, version: release.version }, 'successor updater could not be started');
  try {
    if (r.selfRestartCommand) {
      const [command, ...args] = r.selfRestartCommand;
      const child = spawn(command ?? '', args, { detached: true, stdio: 'ignore', env });
      child.on('error', failed);
      child.unref();
      return;
    }
    const spec = release.manifest.updater;
    if (!spec) return;
    const start = expandStart(spec, {
      release: release.dir,
      version: release.version,
      root: r.root,
      stateDir: r.stateDir,
      agentStateDir: r.agentStateDir,
    });
    const fd = openSync(releaseLayout(r.root).updaterLog, 'a', 0o600);
    try {
      const child = spawn(start.command, [...start.args, ...serveArgs(r)], {
        cwd: release.dir,
        detached: true,
        stdio: ['ignore', fd, fd],
        env,
      });
      child.on('error', failed);
      child.unref();
    } finally {
      closeSync(fd);
    }
  } catch (e: unknown) {
    failed(e);
  }
}

async function serve(o: ServeOptions, version: string, io: Output): Promise<void> {
  const configFile = configPath(o.config);
  const r = resolveServe(o, await loadWorkerConfig(configFile), configFile);
  const { bundle, identity } = await loadWorkerIdentity(r.stateDir, 'updater');
  const listen = hostPortOption('--listen', r.listen);
  // One updater per state dir and per root, claimed before it touches anything else (a second
  // one would start a second agent before failing to listen): its pid file
  // `STATE/run/updater.pid` (the agent's state dir, where the reaper and `worker install` look),
  // naming the root it serves, and the root's link to that file. Both go when it stops.
  let claim: PidFileClaim;
  let rootClaim: { release(): Promise<void> };
  try {
    claim = await claimPidFile(r.agentStateDir, 'updater', { exclusive: true, dirs: [r.root] });
  } catch (e: unknown) {
    if (isCorralError(e, ErrorCode.CONFLICT)) throw new CliExit(EXIT_FAILURE, e.message);
    throw e;
  }
  try {
    await mkdir(releaseLayout(r.root).metaDir, { recursive: true, mode: 0o700 });
    rootClaim = await claimReleaseRoot(releaseLayout(r.root), claim.path);
  } catch (e: unknown) {
    await claim.release();
    if (isCorralError(e, ErrorCode.CONFLICT)) throw new CliExit(EXIT_FAILURE, e.message);
    throw e;
  }
  const releaseClaims = async (): Promise<void> => {
    await rootClaim.release();
    await claim.release();
  };
  // Its own log goes home too, as `corral-updater` lines in the worker log the forwarder ships.
  const logger = createDaemonLogger({
    name: 'corral-updater',
    level: r.logLevel,
    workerLog: r.workerLog,
    hostname: bundle.manifest.hostName,
  });
  const { log } = logger;
  let selfUpdating: AgentRelease | undefined;
  let wake: () => void = () => undefined;
  const woken = new Promise<void>((r) => (wake = r));
  const pause = pauseFromEnv();
  // Taken before the updater listens or starts its agent: a signal meanwhile is honoured
  // once it has, by the same phases.
  const shutdown = listenForShutdown({
    forceOnSecondSignal: true,
    onSignal: (signal) => log.info({ signal }, 'updater stopping'),
  });
  let updater: Awaited<ReturnType<typeof createUpdater>>;
  try {
    updater = await createUpdater({
      root: r.root,
      stateDir: r.stateDir,
      agentStateDir: r.agentStateDir,
      tls: { caPem: bundle.caPem, certPem: identity.certPem, keyPem: identity.keyPem },
      controllerClientFingerprint: bundle.manifest.controllerClientFingerprint,
      listen,
      ...(r.agentRestartCommand ? { agentRestartCommand: r.agentRestartCommand } : {}),
      superviseForwarder: r.superviseForwarder,
      env: childEnv(r),
      updaterVersion: ownVersion(version),
      log,
      keep: r.keep,
      maxReleaseBytes: r.maxReleaseBytes,
      healthTimeoutMs: r.healthTimeoutMs,
      watchMs: r.watchMs,
      reinitialize: o.reinitialize === true,
      onSelfUpdate: (release) => {
        selfUpdating = release;
        wake();
      },
      ...(pause ? { pause } : {}),
    });
  } catch (e: unknown) {
    shutdown.dispose();
    await releaseClaims();
    await logger.close();
    throw e;
  }
  // Said on stderr as well as in the log: the operator must not miss what was lost.
  for (const warning of updater.opening.warnings) io.err(`corral updater: warning: ${warning}\n`);

  // A host decommissioned while it was offline: the controller tells this host's agent
  // certificate so (the updater's own cannot be a TLS client), and the updater stops and exits
  // 0 instead of serving a host that is gone. It leaves its agent running: the agent, told the
  // same at its first heartbeat, wipes the node (services, daemons, files); stopping it here,
  // as the node boots, could end it before that heartbeat and leave the wipe pending for good.
  // No agent identity: no check.
  const agentIdentity = bundle.identities.agent;
  const standingStop = new AbortController();
  let decommissioned = false;
  const standing = agentIdentity
    ? watchStanding({
        controllers: controllerAddresses(bundle.manifest),
        tls: () => ({ caPem: bundle.caPem, certPem: agentIdentity.certPem, keyPem: agentIdentity.keyPem }),
        intervalMs: r.standingMs,
        log,
        signal: standingStop.signal,
      }).then((outcome) => {
        if (outcome !== 'decommissioned') return;
        decommissioned = true;
        wake();
      })
    : Promise.resolve();

  // A successor takes over the running agent, and so does the wipe on a decommissioned host; a
  // plain stop takes the agent down with it.
  const result = await shutdown.wait(
    () => [
      {
        name: 'standing check',
        run: async () => {
          standingStop.abort();
          await standing;
        },
      },
      {
        name: 'updater',
        run: () => updater.close({ keepAgent: selfUpdating !== undefined || decommissioned }),
        timeoutMs: UPDATER_CLOSE_TIMEOUT_MS,
      },
      {
        name: 'remove the pid files',
        run: releaseClaims,
      },
    ],
    woken,
  );
  settleShutdown(log, result);
  const release = decommissioned ? undefined : selfUpdating;
  if (release) {
    startSuccessor(r, release, log);
    log.info({ version: release.version }, 'updater handed over to its new release');
  }
  if (decommissioned)
    log.warn(
      'the controller says this host is decommissioned; the updater stopped and exits (its agent wipes the node)',
    );
  await logger.close();
  log.flush();
}

/** `corral updater …`. */
export function registerUpdaterCommands(program: Command, io: Output): Command {
  const updater = program
    .command('updater')
    .description('run the worker updater that installs pushed releases');

  const serveCmd = updater
    .command('serve')
    .description('serve the updater API (mTLS, controller only): install, swap, health-check, roll back')
    .option('--config <file>', 'worker config file (YAML; default: $CORRAL_CONFIG); flags win over it')
    .option('--state-dir <dir>', 'worker state dir (holds bundle/ and run/endpoints.json)')
    .option('--root <dir>', 'release root: releases/<version>/, the current link, history')
    .option(
      '--listen <host:port>',
      `address to listen on (default ${DEFAULT_UPDATER_LISTEN}; port 0 picks one)`,
    )
    .option('--agent-state-dir <dir>', "the agent's state dir (its health socket); default: --state-dir")
    .option(
      '--agent-restart-command <cmd>',
      'restart the agent with this command (no shell) instead of supervising it',
    )
    .option(
      '--self-restart-command <cmd>',
      'after update-self, run this (no shell) instead of starting the new updater itself',
    )
    .option(
      '--keep <n>',
      `releases kept on disk (current and previous included; default ${DEFAULT_KEEP_RELEASES})`,
    )
    .option('--max-release-bytes <n>', `largest release accepted (default ${DEFAULT_MAX_RELEASE_BYTES})`)
    .option(
      '--health-timeout <duration>',
      `how long a new agent has to report its version (default ${DEFAULT_HEALTH_TIMEOUT_MS / 1000}s)`,
    )
    .option(
      '--watch <duration>',
      `after the health check, watch a new release this long and roll back if its agent exits or turns unhealthy (0: no watch; default ${DEFAULT_WATCH_MS / 1000}s)`,
    )
    .option(
      '--standing-interval <duration>',
      `how often to ask the controller whether this host is still enrolled (exits 0 once it is decommissioned; default ${DEFAULT_STANDING_INTERVAL})`,
    )
    .option(
      '--reinitialize',
      `only where the journal is unusable and cannot be rebuilt from the release tree: start over, which ${REINITIALIZE_DESTROYS}`,
    );
  refuseOldSpellings(serveCmd, ['health-timeout', 'watch']);
  serveCmd.action(async (opts: ServeOptions, cmd: Command) => {
    const version = cmd.parent?.parent?.version() ?? '0.0.0';
    await serve(opts, version, io);
  });
  return updater;
}

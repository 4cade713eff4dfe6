import { spawn } from 'node:child_process';
import { openSync, closeSync } from 'node:fs';
import { resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Command } from 'commander';
import { pino } from 'pino';
import {
  DEFAULT_MAX_RELEASE_BYTES,
  DEFAULT_UPDATER_LISTEN,
  RELEASE_VERSION_RE,
  UPDATER_VERSION_ENV,
} from '../../protocol/index.js';
import { LOG_REDACT_PATHS } from '../../kit/log-redact.js';
import { waitForShutdown } from '../../kit/shutdown.js';
import {
  createUpdater,
  DEFAULT_HEALTH_TIMEOUT_MS,
  DEFAULT_KEEP_RELEASES,
  DEFAULT_WATCH_MS,
  expandStart,
  PAUSE_PHASES,
  REINITIALIZE_DESTROYS,
  releaseLayout,
  type AgentRelease,
  type PausePhase,
  watchStanding,
} from '../../updater/index.js';
import { parseDurationMs } from '../duration.js';
import { settleShutdown } from '../shutdown-result.js';
import { CliExit, EXIT_USAGE } from '../exit.js';
import type { Output } from '../output.js';
import { hostPortOption, loadWorkerIdentity } from '../worker-bundle.js';

/** How long closing the updater may take: it may stop the agent (SIGTERM, then SIGKILL). */
const UPDATER_CLOSE_TIMEOUT_MS = 60_000;

/** Test hook, read only here: `CORRAL_TEST_UPDATER_PAUSE=<phase>:<ms>` holds updates at a phase. */
const PAUSE_ENV = 'CORRAL_TEST_UPDATER_PAUSE';

interface ServeOptions {
  stateDir: string;
  root: string;
  listen: string;
  agentStateDir?: string;
  agentRestartCommand?: string;
  selfRestartCommand?: string;
  keep: string;
  maxReleaseBytes: string;
  healthTimeoutMs: string;
  watch: string;
  standingInterval: string;
  reinitialize?: boolean;
}

/** How often the updater asks the controller whether its host is still enrolled. */
const DEFAULT_STANDING_INTERVAL = '5m';

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

/** `--watch`: a duration (`30s`, `5m`, `500ms`), or 0 for no watch. */
function watchOption(value: string): number {
  if (/^0+(?:\.0+)?(?:ms|s|m|h)?$/.test(value.trim())) return 0;
  try {
    return parseDurationMs(value);
  } catch (e: unknown) {
    throw new CliExit(EXIT_USAGE, `--watch: ${e instanceof Error ? e.message : String(e)}`);
  }
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

/** The serve options a successor updater gets (the same configuration as this one). */
function serveArgs(o: ServeOptions): string[] {
  return [
    '--state-dir',
    o.stateDir,
    '--root',
    o.root,
    '--listen',
    o.listen,
    ...(o.agentStateDir ? ['--agent-state-dir', o.agentStateDir] : []),
    ...(o.agentRestartCommand ? ['--agent-restart-command', o.agentRestartCommand] : []),
    ...(o.selfRestartCommand ? ['--self-restart-command', o.selfRestartCommand] : []),
    '--keep',
    o.keep,
    '--max-release-bytes',
    o.maxReleaseBytes,
    '--health-timeout-ms',
    o.healthTimeoutMs,
    '--watch',
    o.watch,
  ];
}

/**
 * Starts the successor updater from its new release: the configured command (e.g. a service
 * manager restart), or the release's own updater start command with this updater's options,
 * detached, with output appended to ROOT/.updater/updater.log.
 */
function startSuccessor(o: ServeOptions, release: AgentRelease): void {
  const env: NodeJS.ProcessEnv = { ...process.env, [UPDATER_VERSION_ENV]: release.version };
  delete env[PAUSE_ENV];
  if (o.selfRestartCommand) {
    const [command, ...args] = o.selfRestartCommand.split(/\s+/).filter(Boolean);
    spawn(command ?? '', args, { detached: true, stdio: 'ignore', env }).unref();
    return;
  }
  const spec = release.manifest.updater;
  if (!spec) return;
  const root = resolve(o.root);
  const stateDir = resolve(o.stateDir);
  const start = expandStart(spec, {
    release: release.dir,
    version: release.version,
    root,
    stateDir,
    agentStateDir: resolve(o.agentStateDir ?? o.stateDir),
  });
  const fd = openSync(releaseLayout(root).updaterLog, 'a', 0o600);
  try {
    spawn(start.command, [...start.args, ...serveArgs(o)], {
      cwd: release.dir,
      detached: true,
      stdio: ['ignore', fd, fd],
      env,
    }).unref();
  } finally {
    closeSync(fd);
  }
}

async function serve(o: ServeOptions, version: string, io: Output): Promise<void> {
  const { bundle, identity } = await loadWorkerIdentity(o.stateDir, 'updater');
  const listen = hostPortOption('--listen', o.listen);
  const keep = keepOption(o.keep);
  const watchMs = watchOption(o.watch);
  let standingMs: number;
  try {
    standingMs = parseDurationMs(o.standingInterval);
  } catch (e: unknown) {
    throw new CliExit(EXIT_USAGE, `--standing-interval: ${e instanceof Error ? e.message : String(e)}`);
  }
  const log = pino({ name: 'corral-updater', redact: [...LOG_REDACT_PATHS] });
  let selfUpdating: AgentRelease | undefined;
  let wake: () => void = () => undefined;
  const woken = new Promise<void>((r) => (wake = r));
  const pause = pauseFromEnv();
  const updater = await createUpdater({
    root: resolve(o.root),
    stateDir: resolve(o.stateDir),
    agentStateDir: resolve(o.agentStateDir ?? o.stateDir),
    tls: { caPem: bundle.caPem, certPem: identity.certPem, keyPem: identity.keyPem },
    controllerClientFingerprint: bundle.manifest.controllerClientFingerprint,
    listen,
    ...(o.agentRestartCommand
      ? { agentRestartCommand: o.agentRestartCommand.split(/\s+/).filter(Boolean) }
      : {}),
    env: process.env,
    updaterVersion: ownVersion(version),
    log,
    keep,
    maxReleaseBytes: positiveInt(o.maxReleaseBytes, '--max-release-bytes'),
    healthTimeoutMs: positiveInt(o.healthTimeoutMs, '--health-timeout-ms'),
    watchMs,
    reinitialize: o.reinitialize === true,
    onSelfUpdate: (release) => {
      selfUpdating = release;
      wake();
    },
    ...(pause ? { pause } : {}),
  });
  // Said on stderr as well as in the log: the operator must not miss what was lost.
  for (const warning of updater.opening.warnings) io.err(`corral updater: warning: ${warning}\n`);
  const { writeDaemonPidFile } = await import('../../agent/index.js');
  const pidFile = await writeDaemonPidFile(resolve(o.stateDir), 'updater', [resolve(o.root)]);
  // A host decommissioned while it was offline: the controller tells this host's agent
  // certificate so (the updater's own cannot be a TLS client), and the updater stops (with its
  // agent) and exits 0 instead of serving a host that is gone. No agent identity: no check.
  const agentIdentity = bundle.identities.agent;
  const standingStop = new AbortController();
  let decommissioned = false;
  const standing = agentIdentity
    ? watchStanding({
        controller: bundle.manifest.controller,
        tls: () => ({ caPem: bundle.caPem, certPem: agentIdentity.certPem, keyPem: agentIdentity.keyPem }),
        intervalMs: standingMs,
        log,
        signal: standingStop.signal,
      }).then((outcome) => {
        if (outcome !== 'decommissioned') return;
        decommissioned = true;
        wake();
      })
    : Promise.resolve();

  // A successor takes over the running agent; a plain stop takes the agent down with it.
  const result = await waitForShutdown(
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
        run: () => updater.close({ keepAgent: selfUpdating !== undefined && !decommissioned }),
        timeoutMs: UPDATER_CLOSE_TIMEOUT_MS,
      },
    ],
    {
      forceOnSecondSignal: true,
      until: woken,
      onSignal: (signal) => log.info({ signal }, 'updater stopping'),
    },
  );
  settleShutdown(log, result);
  const release = decommissioned ? undefined : selfUpdating;
  if (release) {
    startSuccessor(o, release);
    log.info({ version: release.version }, 'updater handed over to its new release');
  }
  await pidFile.remove();
  if (decommissioned)
    log.warn('the controller says this host is decommissioned; the updater stopped and exits');
  log.flush();
}

/** `corral updater …`. */
export function registerUpdaterCommands(program: Command, io: Output): Command {
  const updater = program
    .command('updater')
    .description('run the worker updater that installs pushed releases');

  updater
    .command('serve')
    .description('serve the updater API (mTLS, controller only): install, swap, health-check, roll back')
    .requiredOption('--state-dir <dir>', 'worker state dir (holds bundle/ and run/endpoints.json)')
    .requiredOption('--root <dir>', 'release root: releases/<version>/, the current link, history')
    .option('--listen <host:port>', 'address to listen on (port 0 picks one)', DEFAULT_UPDATER_LISTEN)
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
      'releases kept on disk (current and previous included)',
      String(DEFAULT_KEEP_RELEASES),
    )
    .option('--max-release-bytes <n>', 'largest release accepted', String(DEFAULT_MAX_RELEASE_BYTES))
    .option(
      '--health-timeout-ms <n>',
      'how long a new agent has to report its version',
      String(DEFAULT_HEALTH_TIMEOUT_MS),
    )
    .option(
      '--watch <duration>',
      'after the health check, watch a new release this long and roll back if its agent exits or turns unhealthy (0: no watch)',
      `${DEFAULT_WATCH_MS / 1000}s`,
    )
    .option(
      '--standing-interval <duration>',
      'how often to ask the controller whether this host is still enrolled (exits 0 once it is decommissioned)',
      DEFAULT_STANDING_INTERVAL,
    )
    .option(
      '--reinitialize',
      `only where the journal is unusable and cannot be rebuilt from the release tree: start over, which ${REINITIALIZE_DESTROYS}`,
    )
    .action(async (opts: ServeOptions, cmd: Command) => {
      const version = cmd.parent?.parent?.version() ?? '0.0.0';
      await serve(opts, version, io);
    });
  return updater;
}

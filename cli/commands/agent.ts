import { readFile, unlink } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { Option, type Command } from 'commander';
import { pino } from 'pino';
import type { Reinitialized, SelfDestructConfig } from '../../agent/index.js';
import {
  DEFAULT_AGENT_PORT,
  parseJsonWith,
  RELEASE_VERSION_ENV,
  RELEASE_VERSION_RE,
  WORKER_LOG_FILE,
} from '../../protocol/index.js';
import { LOG_REDACT_PATHS } from '../../kit/log-redact.js';
import { waitForShutdown } from '../../kit/shutdown.js';
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
  stateDir: string;
  logFile?: string;
  installDir: string[];
  extraDir: string[];
  keepDir: string[];
  unit: string[];
}

interface ServeOptions extends CommonOptions {
  listen?: string;
  logLevel: string;
  systemd: boolean;
  heartbeatIntervalMs?: string;
  heartbeatMinIntervalMs?: string;
  backoffBaseMs?: string;
  backoffCapMs?: string;
  renewBeforeMs?: string;
  maxRestarts?: string;
  restartWindowMs?: string;
  restartBaseMs?: string;
  adoptPollMs?: string;
  logPollMs?: string;
  stopGraceMs?: string;
  concurrency?: string;
  reinitialize?: boolean;
}

function withCommon(cmd: Command): Command {
  return cmd
    .requiredOption('--state-dir <dir>', 'agent state dir (holds bundle/, services/, logs/)')
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

function selfDestructConfig(o: CommonOptions): SelfDestructConfig & { logFile: string } {
  const stateDir = resolve(o.stateDir);
  const logFile = resolve(o.logFile ?? join(stateDir, WORKER_LOG_FILE));
  return {
    stateDir,
    installDirs: o.installDir.map((d) => resolve(d)),
    extraDirs: o.extraDir.map((d) => resolve(d)),
    keepDirs: [dirname(logFile), ...o.keepDir.map((d) => resolve(d))],
    units: o.unit,
    logFile,
  };
}

function agentVersion(fallback: string): string {
  const fromEnv = process.env[RELEASE_VERSION_ENV];
  // The heartbeat schema takes release versions only; anything else would be refused there.
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

async function serve(o: ServeOptions, version: string, io: Output): Promise<void> {
  const stateDir = resolve(o.stateDir);
  const { manifest } = (await loadWorkerIdentity(stateDir, 'agent')).bundle;
  const listen = hostPortOption(
    '--listen',
    o.listen ?? `0.0.0.0:${manifest.agentPort || DEFAULT_AGENT_PORT}`,
  );
  const log = pino({ name: 'corral-agent', level: o.logLevel, redact: [...LOG_REDACT_PATHS] });
  const sd = selfDestructConfig(o);
  const script = process.argv[1];
  const { createAgent } = await agentLib();
  const agent = await createAgent({
    stateDir,
    listen,
    version,
    log,
    logFile: sd.logFile,
    baseEnv: { PATH: process.env.PATH ?? '/usr/local/bin:/usr/bin:/bin' },
    heartbeat: {
      ...(o.heartbeatIntervalMs && { intervalMs: int(o.heartbeatIntervalMs, '--heartbeat-interval-ms') }),
      ...(o.heartbeatMinIntervalMs && {
        minIntervalMs: int(o.heartbeatMinIntervalMs, '--heartbeat-min-interval-ms'),
      }),
      ...(o.backoffBaseMs && { backoffBaseMs: int(o.backoffBaseMs, '--backoff-base-ms') }),
      ...(o.backoffCapMs && { backoffCapMs: int(o.backoffCapMs, '--backoff-cap-ms') }),
      ...(o.renewBeforeMs && { renewBeforeMs: int(o.renewBeforeMs, '--renew-before-ms') }),
    },
    restart: {
      ...(o.maxRestarts && { maxRestarts: int(o.maxRestarts, '--max-restarts') }),
      ...(o.restartWindowMs && { windowMs: int(o.restartWindowMs, '--restart-window-ms') }),
      ...(o.restartBaseMs && { baseDelayMs: int(o.restartBaseMs, '--restart-base-ms') }),
    },
    ...(o.adoptPollMs && { adoptPollMs: int(o.adoptPollMs, '--adopt-poll-ms') }),
    ...(o.logPollMs && { logPollMs: int(o.logPollMs, '--log-poll-ms') }),
    ...(o.stopGraceMs && { defaultStopGraceMs: int(o.stopGraceMs, '--stop-grace-ms') }),
    ...(o.concurrency && { concurrency: Math.max(1, int(o.concurrency, '--concurrency') ?? 1) }),
    reinitialize: o.reinitialize === true,
    selfDestruct: {
      installDirs: sd.installDirs,
      extraDirs: sd.extraDirs,
      keepDirs: sd.keepDirs,
      units: sd.units,
      systemd: o.systemd ? 'auto' : 'never',
      ...(script && { reaperCommand: [process.execPath, resolve(script), 'agent', 'reap', '--plan'] }),
    },
  });

  if (o.reinitialize) io.err(reinitializeReport(agent.reinitialized));

  // The first signal starts the drain; a second one ends the wait for it (the CLI entry then
  // exits), however long a service's stop grace still has to run.
  const result = await waitForShutdown([{ name: 'agent', run: () => agent.close(), timeoutMs: 30_000 }], {
    forceOnSecondSignal: true,
    onSignal: (signal) => log.info({ signal }, 'agent stopping'),
  });
  settleShutdown(log, result);
  log.flush();
}

async function selfDestruct(
  o: CommonOptions & { dryRun?: boolean; yes?: boolean; json?: boolean },
  io: Output,
): Promise<void> {
  if (!o.dryRun && !o.yes)
    throw new CliExit(EXIT_USAGE, 'pass --dry-run to list what would go, or --yes to do it here');
  const config = selfDestructConfig(o);
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
      services: plan.services.map((s) => `${s.name} (pid ${s.process.pid})`),
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
    .option('--log-level <level>', 'pino log level', 'info')
    .option('--no-systemd', 'never start the self-destruct reaper through systemd-run')
    .option(
      '--reinitialize',
      'replace state files that are missing or damaged (moved aside as *.damaged-TIME), saying what that destroys',
    )
    .option('--heartbeat-interval-ms <n>', 'heartbeat interval before the controller sets one');
  for (const [flag, help] of [
    ['--heartbeat-min-interval-ms <n>', 'shortest heartbeat interval honoured'],
    ['--backoff-base-ms <n>', 'first backoff while the controller is down'],
    ['--backoff-cap-ms <n>', 'longest backoff while the controller is down'],
    ['--renew-before-ms <n>', 'renew the certificate this long before it expires'],
    ['--max-restarts <n>', 'restarts in the window before a service is failed'],
    ['--restart-window-ms <n>', 'crash-loop window'],
    ['--restart-base-ms <n>', 'first restart backoff'],
    ['--adopt-poll-ms <n>', 'how often re-adopted processes are checked'],
    ['--log-poll-ms <n>', 'how often service output is copied to the worker log'],
    ['--stop-grace-ms <n>', 'default time between SIGTERM and SIGKILL'],
    ['--concurrency <n>', 'services started or stopped at once by a reconcile'],
  ] as const) {
    serveCmd.addOption(new Option(flag, help).hideHelp());
  }
  serveCmd.action(async (opts: ServeOptions, cmd: Command) => {
    await serve(opts, agentVersion(cmd.parent?.parent?.version() ?? '0.0.0'), io);
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

import { mkdir, readdir, rename, rm, stat } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { Option, type Command } from 'commander';
import { isPkiError, loadBundle, writeFileAtomic } from '../../pki/index.js';
import { AGENT_HEALTH_SOCKET, WORKER_LOG_FILE } from '../../protocol/index.js';
import { readEndpointsFile } from '../../kit/endpoints-file.js';
import { livePidFile } from '../../kit/pid-file.js';
import { isSameProcess, signalProcess } from '../../kit/proc.js';
import { probeOnce } from '../../updater/health-probe.js';
import { releaseLayout } from '../../updater/index.js';
import { renderWorkerConfig } from '../config/worker-config.js';
import { CliExit, EXIT_FAILURE, EXIT_USAGE } from '../exit.js';
import { runningRelease } from '../installation.js';
import { installKillPoint } from '../install/kill-points.js';
import { installUnits, pollFor, removeUnits, startDetached } from '../install/node-start.js';
import { installReleaseZero, removePartials } from '../install/release-zero.js';
import { pid1IsSystemd, WORKER_UNITS, workerUnits } from '../install/systemd-units.js';
import { renderJson, renderRecord, type Output } from '../output.js';
import { collectFlag, parseLabelFlags } from '../label-flags.js';
import { readSecret } from '../secret-input.js';
import { durationFlag } from '../config/worker-config.js';

export const DEFAULT_PREFIX = '/opt/corral';
export const DEFAULT_WORKER_STATE_DIR = '/var/lib/corral';
export const DEFAULT_CONFIG_DIR = '/etc/corral';
export const WORKER_CONFIG_FILE = 'worker.yaml';
/** Where the updater's own output goes on a node without systemd (kept, like every log). */
export const UPDATER_LOG_FILE = 'logs/updater.log';

interface Dirs {
  prefix: string;
  stateDir: string;
  configDir: string;
}

interface InstallOptions extends Partial<Dirs> {
  controller: string;
  caPin: string;
  tokenFile?: string;
  name?: string;
  label: string[];
  address?: string;
  agentPort?: string;
  updaterPort?: string;
  systemd: boolean;
  wait: string;
  json?: boolean;
  listenAddress: string;
  heartbeatInterval?: string;
  releaseFrom?: string;
  start: boolean;
}

function portOf(flag: string, value: string | undefined, fallback: number): number {
  if (value === undefined) return fallback;
  const port = Number(value);
  if (!Number.isInteger(port) || port < 1 || port > 65535)
    throw new CliExit(EXIT_USAGE, `${flag} must be a port (1-65535)`);
  return port;
}

const dirsOf = (o: Partial<Dirs>): Dirs => ({
  prefix: resolve(o.prefix ?? DEFAULT_PREFIX),
  stateDir: resolve(o.stateDir ?? DEFAULT_WORKER_STATE_DIR),
  configDir: resolve(o.configDir ?? DEFAULT_CONFIG_DIR),
});

const exists = (p: string): Promise<boolean> =>
  stat(p).then(
    () => true,
    () => false /* ENOENT */,
  );

/** Whether `STATE/bundle` holds a whole identity; its host name if so. */
async function joinedAs(stateDir: string): Promise<string | undefined> {
  try {
    return (await loadBundle(join(stateDir, 'bundle'))).manifest.hostName;
  } catch (e: unknown) {
    if (isPkiError(e)) return undefined;
    throw e;
  }
}

/**
 * Joins into a temp dir beside the state dir's bundle and renames it into place whole, so an
 * install killed mid-join leaves no half-written bundle (only a temp dir the next run removes).
 */
async function joinOnce(
  o: InstallOptions,
  d: Dirs,
  labels: Record<string, string>,
  io: Output,
): Promise<string> {
  const token = await readSecret('--token-file', o.tokenFile ?? '-', io);
  const { joinFleet } = await import('../../agent/link/join.js');
  const tmp = join(d.stateDir, `.install-join-${process.pid}`);
  await rm(tmp, { recursive: true, force: true });
  await mkdir(tmp, { recursive: true, mode: 0o700 });
  const result = await joinFleet({
    controller: o.controller,
    token,
    caPin: o.caPin,
    stateDir: tmp,
    ...(o.address !== undefined ? { address: o.address } : {}),
    agentPort: portOf('--agent-port', o.agentPort, 8765),
    updaterPort: portOf('--updater-port', o.updaterPort, 8766),
    labels,
  });
  await rename(join(tmp, 'bundle'), join(d.stateDir, 'bundle'));
  await rm(tmp, { recursive: true, force: true });
  if (!result.confirmed.ok)
    io.err(`corral: warning: joined, but the controller could not be told (${result.confirmed.reason})\n`);
  return result.manifest.hostName;
}

async function workerInstall(o: InstallOptions, systemdFlag: boolean, io: Output): Promise<void> {
  const d = dirsOf(o);
  // Checked before anything is read or written: a bad label never costs the token.
  const labels = parseLabelFlags(o.label);
  const waitMs = durationFlag('--wait', o.wait);
  if (o.heartbeatInterval !== undefined) durationFlag('--heartbeat-interval', o.heartbeatInterval);
  const systemd = systemdFlag ? o.systemd : await pid1IsSystemd();
  const done: string[] = [];
  await mkdir(d.stateDir, { recursive: true, mode: 0o700 });
  for (const name of await readdir(d.stateDir)) {
    if (name.startsWith('.install-join-')) {
      await rm(join(d.stateDir, name), { recursive: true, force: true });
      done.push('removed an unfinished join of an earlier run');
    }
  }

  let hostName = await joinedAs(d.stateDir);
  if (hostName === undefined) {
    hostName = await joinOnce(o, d, labels, io);
    done.push(`joined the fleet as ${hostName}`);
  }
  if (o.name !== undefined && o.name !== hostName)
    throw new CliExit(EXIT_USAGE, `this node is enrolled as ${hostName}, not ${o.name}`);
  installKillPoint('joined');

  const running = runningRelease();
  const version = running.version ?? running.packageVersion;
  const zero = await installReleaseZero({
    root: running.root,
    prefix: d.prefix,
    version,
    createdBy: 'corral worker install',
    ...(o.releaseFrom !== undefined ? { linkFrom: resolve(o.releaseFrom) } : {}),
  });
  done.push(...zero.done);

  const configFile = join(d.configDir, WORKER_CONFIG_FILE);
  if (!(await exists(configFile))) {
    await mkdir(d.configDir, { recursive: true, mode: 0o755 });
    const text = renderWorkerConfig({
      stateDir: d.stateDir,
      root: d.prefix,
      configDir: d.configDir,
      agentListen: `${o.listenAddress}:${portOf('--agent-port', o.agentPort, 8765)}`,
      updaterListen: `${o.listenAddress}:${portOf('--updater-port', o.updaterPort, 8766)}`,
      ...(o.heartbeatInterval !== undefined ? { heartbeatInterval: o.heartbeatInterval } : {}),
      systemd,
      units: systemd ? [...WORKER_UNITS] : [],
      logFile: join(d.stateDir, WORKER_LOG_FILE),
    });
    await writeFileAtomic(configFile, text, 0o644);
    done.push(`wrote ${configFile}`);
  }
  installKillPoint('config');

  const layout = releaseLayout(d.prefix);
  // What starts the node at boot where there is no systemd (the operator's init runs it).
  const startCommand = [
    process.execPath,
    join(layout.selfCurrentLink, 'bin', 'corral.js'),
    'updater',
    'serve',
    '--config',
    configFile,
  ];
  if (!o.start) {
    io.out(
      o.json
        ? renderJson({ name: hostName, changed: done.length > 0, done, version, config: configFile })
        : `${done.join('\n')}\n`,
    );
    return;
  }
  if (systemd) {
    const units = workerUnits({ node: process.execPath, prefix: d.prefix, configFile });
    await installUnits(units);
    done.push(`enabled and started ${Object.keys(units).join(', ')}`);
  } else if ((await livePidFile(d.stateDir, 'updater', { command: true })) === undefined) {
    const [node = process.execPath, ...args] = startCommand;
    const pid = await startDetached({
      node,
      args,
      logFile: join(d.stateDir, UPDATER_LOG_FILE),
      cwd: d.stateDir,
    });
    done.push(`started the updater (pid ${pid}); it runs the agent and the forwarder`);
  }
  installKillPoint('started');

  const healthy = await pollFor(async () => {
    const endpoints = await readEndpointsFile(d.stateDir).catch(() => undefined /* half-written */);
    if (endpoints?.updater === undefined) return undefined;
    const probe = await probeOnce(join(d.stateDir, AGENT_HEALTH_SOCKET));
    return probe.ok ? { version: probe.health.version, endpoints } : undefined;
  }, waitMs);
  if (!healthy)
    throw new CliExit(
      EXIT_FAILURE,
      `installed, but the node did not come up within ${o.wait}: see ${join(d.stateDir, UPDATER_LOG_FILE)} and ${layout.agentLog}`,
    );
  const view = {
    name: hostName,
    changed: done.length > 0,
    done,
    version: healthy.version,
    prefix: d.prefix,
    stateDir: d.stateDir,
    config: configFile,
    systemd,
    agent: healthy.endpoints.agent ?? null,
    updater: healthy.endpoints.updater,
    labels,
    startCommand: systemd ? null : startCommand,
  };
  if (o.json) {
    io.out(renderJson(view));
    return;
  }
  io.out(
    renderRecord([
      ['name', view.name],
      ['done', view.changed ? view.done.join('; ') : 'nothing: already installed and running'],
      ['version', view.version],
      ['config', view.config],
      ['agent', view.agent],
      ['updater', view.updater],
      ['supervision', systemd ? 'systemd units' : 'the updater runs the agent and the forwarder'],
      ...(systemd ? [] : ([['start at boot', startCommand.join(' ')]] as [string, string][])),
    ]),
  );
}

/** Stops the updater (and with it the agent and forwarder it runs); its pid when one was running. */
async function stopUpdater(stateDir: string): Promise<number | undefined> {
  const running = await livePidFile(stateDir, 'updater', { command: true });
  if (running === undefined) return undefined;
  signalProcess(running.pid, 'SIGTERM');
  const gone = await pollFor(async () => ((await isSameProcess(running)) ? undefined : true), 60_000);
  // Checked again right before: a pid reused since is never signalled.
  if (!gone && (await isSameProcess(running))) signalProcess(running.pid, 'SIGKILL');
  return running.pid;
}

async function workerUninstall(
  o: Partial<Dirs> & { yes?: boolean; json?: boolean },
  io: Output,
): Promise<void> {
  const d = dirsOf(o);
  const systemd = await pid1IsSystemd();
  const logFile = join(d.stateDir, WORKER_LOG_FILE);
  const remove = [d.prefix, join(d.configDir, WORKER_CONFIG_FILE), d.stateDir];
  if (!o.yes) {
    io.out(
      renderRecord([
        [
          'would stop',
          systemd ? WORKER_UNITS.join(', ') : 'the updater, the agent, the forwarder and every service',
        ],
        ['would delete', remove.join(', ')],
        ['would keep', join(d.stateDir, 'logs')],
      ]),
    );
    throw new CliExit(EXIT_USAGE, 'pass --yes to uninstall');
  }
  if (systemd) await removeUnits(WORKER_UNITS);
  const updaterPid = await stopUpdater(d.stateDir);
  const { planFromDisk, runReaper, serviceDirs, DEFAULT_STOP_GRACE_MS } =
    await import('../../agent/index.js');
  const plan = await planFromDisk(
    d.stateDir,
    {
      stateDir: d.stateDir,
      installDirs: [d.prefix],
      extraDirs: [],
      keepDirs: [join(d.stateDir, 'logs')],
      units: [],
      logFile,
    },
    serviceDirs(join(d.stateDir, 'services')),
    DEFAULT_STOP_GRACE_MS,
  );
  const report = await runReaper(plan);
  await rm(join(d.configDir, WORKER_CONFIG_FILE), { force: true });
  await removePartials(d.prefix).catch(() => 0 /* the prefix is gone already */);
  const view = { updaterStopped: updaterPid ?? null, ...report };
  io.out(
    o.json ? renderJson(view) : renderRecord(Object.entries(view).map(([k, v]) => [k, JSON.stringify(v)])),
  );
  if (report.errors.length > 0)
    throw new CliExit(EXIT_FAILURE, `uninstall finished with ${report.errors.length} errors`);
}

const collectDirs = (cmd: Command): Command =>
  cmd
    .option('--prefix <dir>', `where releases live (default ${DEFAULT_PREFIX})`)
    .option('--state-dir <dir>', `worker state dir (default ${DEFAULT_WORKER_STATE_DIR})`)
    .option('--config-dir <dir>', `where worker.yaml goes (default ${DEFAULT_CONFIG_DIR})`);

/** `corral worker install|uninstall`. */
export function registerWorkerCommands(program: Command, io: Output): Command {
  const worker = program.command('worker').description('install or remove a worker node on this machine');
  const install = collectDirs(
    worker
      .command('install')
      .description(
        'join the fleet, install the running Corral as release 0, write worker.yaml, start the node',
      )
      .requiredOption(
        '--controller <host:port>',
        "the controller's join address (as `token create` prints it)",
      )
      .requiredOption('--ca-pin <sha256:hex>', "the controller CA's pin")
      .option('--token-file <path>', 'read the join token from this file, or stdin with - (the default)'),
  )
    .option('--name <name>', 'the host name the token enrolls (checked)')
    .option(
      '--label <key=value>',
      "label for the host, sent with the join besides the token's (repeatable)",
      collectFlag,
      [],
    )
    .option('--address <address>', 'address the controller reaches this worker at (default: ours toward it)')
    .option('--agent-port <port>', 'agent port, in the bundle and worker.yaml (default 8765)')
    .option('--updater-port <port>', 'updater port, in the bundle and worker.yaml (default 8766)')
    .option(
      '--no-systemd',
      'no units even when PID 1 is systemd: the updater supervises the agent and forwarder',
    )
    .option('--listen-address <host>', 'address the agent and updater listen on, in worker.yaml', '0.0.0.0')
    .option('--heartbeat-interval <duration>', 'heartbeat interval written to worker.yaml (default 30s)')
    .option('--wait <duration>', 'how long to wait for the node to come up', '120s')
    .addOption(
      new Option('--release-from <dir>', 'hard-link release 0 from this installed release').hideHelp(),
    )
    .addOption(new Option('--no-start', 'install only; the caller starts the updater').hideHelp())
    .option('--json', 'print JSON');
  install.action(async (opts: InstallOptions, cmd: Command) => {
    await workerInstall(opts, cmd.getOptionValueSource('systemd') === 'cli', io);
  });
  collectDirs(
    worker
      .command('uninstall')
      .description('stop the node and remove what install made (units, prefix, state); logs stay'),
  )
    .option('--yes', 'do it (without it: list what would go)')
    .option('--json', 'print JSON')
    .action(async (opts: Partial<Dirs> & { yes?: boolean; json?: boolean }) => {
      await workerUninstall(opts, io);
    });
  return worker;
}

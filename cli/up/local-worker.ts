import { execFile } from 'node:child_process';
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { readEndpointsFile } from '../../kit/endpoints-file.js';
import { WORKER_LOG_FILE } from '../../protocol/agent-api.js';
import { corralJson, type CorralCommand } from './corral-cli.js';
import { spawnDaemon, type Daemon } from './daemon.js';
import { DEFAULT_START_TIMEOUT_MS, isolatedEnv, POLL_MS, type LocalController } from './local-controller.js';
import { tailOf } from './log-tail.js';
import { freePort } from './free-port.js';
import { CorralError, ErrorCode } from '../../protocol/errors.js';

/** Where one worker lives and how its daemons are started. */
export interface WorkerPlan {
  readonly name: string;
  /** The address the controller reaches the worker at; the agent and updater listen there. */
  readonly address: string;
  /** Command prefix for the worker's daemons, e.g. `['ip', 'netns', 'exec', NS]`. */
  readonly prefix?: readonly string[];
  /** Ports on `address`; default: free loopback ports picked now. */
  readonly agentPort?: number;
  readonly updaterPort?: number;
}

export interface WorkerOptions {
  readonly cli: CorralCommand;
  readonly controller: LocalController;
  /** The worker's state dir: bundle/, services/, logs/, run/. */
  readonly stateDir: string;
  readonly heartbeatIntervalMs: number;
  readonly updater?: boolean;
  /** Start a forwarder (only when the controller has a syslog listener). */
  readonly forwarder?: boolean;
  readonly startTimeoutMs?: number;
}

/** One worker of a local fleet: its bundle and the daemons that run on it. */
export interface LocalWorker {
  readonly name: string;
  readonly hostId: string;
  readonly stateDir: string;
  readonly address: string;
  readonly agentPort: number;
  readonly updaterPort: number;
  /** The agent running now (replaced by `startAgent`). */
  readonly agent: Daemon;
  readonly updater: Daemon | undefined;
  readonly forwarder: Daemon | undefined;
  /** Starts the agent again (after it stopped or was killed) and waits for its lock and endpoint. */
  startAgent(): Promise<Daemon>;
  /** SIGTERM to the forwarder, updater and agent (SIGKILL after a grace), all at once. */
  stopDaemons(): Promise<void>;
  /** Stops every service process the worker's records name (the agent must be stopped first). */
  stopServices(): Promise<string[]>;
}

const isLoopback = (address: string): boolean => address === '127.0.0.1' || address === '::1';

/** Enrolls a worker through `corral controller enroll`, writing its bundle into `stateDir/bundle`. */
export async function enrollWorker(
  o: WorkerOptions,
  plan: WorkerPlan,
): Promise<{ hostId: string; agentPort: number; updaterPort: number }> {
  const pick = async (given: number | undefined, fallback: number): Promise<number> =>
    given ?? (isLoopback(plan.address) && plan.prefix === undefined ? freePort(plan.address) : fallback);
  const agentPort = await pick(plan.agentPort, 8765);
  const updaterPort = await pick(plan.updaterPort, 8766);
  await mkdir(o.stateDir, { recursive: true, mode: 0o700 });
  const enrolled = await corralJson<{ hostId: string }>(
    o.cli,
    [
      'controller',
      'enroll',
      '--state-dir',
      o.controller.stateDir,
      '--name',
      plan.name,
      '--address',
      plan.address,
      '--agent-port',
      String(agentPort),
      '--updater-port',
      String(updaterPort),
      '--out-dir',
      join(o.stateDir, 'bundle'),
      '--json',
    ],
    { env: o.controller.env },
  );
  return { hostId: enrolled.hostId, agentPort, updaterPort };
}

async function waitUntil(
  what: string,
  daemon: Daemon,
  check: () => Promise<boolean>,
  timeoutMs: number,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (!daemon.running())
      throw new CorralError(ErrorCode.UNAVAILABLE, `${what} exited: ${await tailOf(daemon.logFile)}`);
    if (Date.now() > deadline)
      throw new CorralError(ErrorCode.TIMEOUT, `${what} did not start: ${await tailOf(daemon.logFile)}`);
    await sleep(POLL_MS);
  }
}

/** Enrolls the worker and starts its agent, then its updater and forwarder (when asked). */
export async function startLocalWorker(o: WorkerOptions, plan: WorkerPlan): Promise<LocalWorker> {
  const { hostId, agentPort, updaterPort } = await enrollWorker(o, plan);
  const stateDir = o.stateDir;
  const logDir = join(stateDir, 'daemon-logs');
  await mkdir(logDir, { recursive: true, mode: 0o700 });
  const timeoutMs = o.startTimeoutMs ?? DEFAULT_START_TIMEOUT_MS;
  const prefix = plan.prefix ?? [];
  const node = o.cli.node ?? process.execPath;
  const daemonOf = (name: string, args: string[]): Promise<Daemon> =>
    spawnDaemon({
      name: `${plan.name}/${name}`,
      command: prefix[0] ?? node,
      args: [...(prefix.length > 0 ? [...prefix.slice(1), node] : []), o.cli.bin, ...args],
      logFile: join(logDir, `${name}.log`),
      env: isolatedEnv(),
    });
  const endpoint = async (key: string): Promise<string | undefined> =>
    (await readEndpointsFile(stateDir).catch(() => undefined /* half-written: retry */))?.[key];

  let agent: Daemon | undefined;
  const startAgent = async (): Promise<Daemon> => {
    const daemon = await daemonOf('agent', [
      'agent',
      'serve',
      '--state-dir',
      stateDir,
      '--listen',
      `${plan.address}:${agentPort}`,
      '--heartbeat-interval',
      `${o.heartbeatIntervalMs}ms`,
      '--log-level',
      'warn',
      '--no-systemd',
    ]);
    agent = daemon;
    const lockPid = async (): Promise<number | undefined> => {
      try {
        return (JSON.parse(await readFile(join(stateDir, 'run', 'agent.pid'), 'utf8')) as { pid?: number })
          .pid;
      } catch {
        return undefined; // ENOENT or half-written: the agent has not taken its lock yet
      }
    };
    try {
      await waitUntil(
        `${plan.name} agent`,
        daemon,
        async () => (await lockPid()) === daemon.pid && (await endpoint('agent')) !== undefined,
        timeoutMs,
      );
    } catch (e: unknown) {
      await daemon.stop();
      throw e;
    }
    return daemon;
  };

  const started: Daemon[] = [];
  try {
    const first = await startAgent();
    started.push(first);
    let updater: Daemon | undefined;
    if (o.updater ?? true) {
      updater = await daemonOf('updater', [
        'updater',
        'serve',
        '--state-dir',
        stateDir,
        '--root',
        join(stateDir, 'root'),
        '--listen',
        `${plan.address}:${updaterPort}`,
      ]);
      started.push(updater);
      const daemon = updater;
      await waitUntil(
        `${plan.name} updater`,
        daemon,
        async () => (await endpoint('updater')) !== undefined,
        timeoutMs,
      );
    }
    let forwarder: Daemon | undefined;
    if (o.forwarder && o.controller.endpoints.syslog !== undefined) {
      forwarder = await daemonOf('forwarder', [
        'forwarder',
        'run',
        '--state-dir',
        stateDir,
        '--file',
        join(stateDir, WORKER_LOG_FILE),
        '--log-level',
        'warn',
      ]);
      started.push(forwarder);
    }
    const stopServices = async (): Promise<string[]> => {
      const { planFromDisk, runReaper, serviceDirs, DEFAULT_STOP_GRACE_MS } =
        await import('../../agent/index.js');
      const found = await planFromDisk(
        stateDir,
        { stateDir, installDirs: [], extraDirs: [], keepDirs: [], units: [], logFile: null },
        serviceDirs(join(stateDir, 'services')),
        DEFAULT_STOP_GRACE_MS,
      );
      const report = await runReaper({
        ...found,
        daemons: [],
        deleteDirs: [],
        keepDirs: [],
        units: [],
        logFile: null,
        report: null,
      });
      if (report.errors.length > 0)
        throw new CorralError(ErrorCode.PROCESS_FAILED, `${plan.name}: ${report.errors.join('; ')}`);
      return report.stoppedServices;
    };
    return {
      name: plan.name,
      hostId,
      stateDir,
      address: plan.address,
      agentPort,
      updaterPort,
      get agent() {
        return agent ?? first;
      },
      updater,
      forwarder,
      startAgent,
      async stopDaemons() {
        await Promise.all([forwarder?.stop(), updater?.stop(), agent?.stop()]);
      },
      stopServices,
    };
  } catch (e: unknown) {
    await Promise.all(started.map((d) => d.stop()));
    throw e;
  }
}

/** What an installed local worker needs beyond WorkerOptions: the shared release 0 to link from. */
export interface InstallWorkerOptions extends WorkerOptions {
  /** An installed release 0 (`…/releases/<version>`) every worker of the fleet hard-links. */
  readonly releaseFrom: string;
}

/**
 * A worker set up the way an operator sets one up: a join token from the controller, then
 * `corral worker install --no-systemd` (release 0, worker.yaml), and the updater started from
 * the installed tree with that config: the updater runs the agent and the forwarder, so a
 * later `controller update` is an ordinary swap. `agent` is the updater here (the root of the
 * worker's supervision tree); `startAgent` is not available (the updater restarts the agent).
 */
export async function installLocalWorker(o: InstallWorkerOptions, plan: WorkerPlan): Promise<LocalWorker> {
  const pick = async (given: number | undefined, fallback: number): Promise<number> =>
    given ?? (isLoopback(plan.address) && plan.prefix === undefined ? freePort(plan.address) : fallback);
  const agentPort = await pick(plan.agentPort, 8765);
  const updaterPort = await pick(plan.updaterPort, 8766);
  const home = o.stateDir;
  const stateDir = join(home, 'state');
  const prefixDir = join(home, 'opt');
  const configDir = join(home, 'etc');
  await mkdir(home, { recursive: true, mode: 0o700 });
  const token = await corralJson<{ token: string; caPin: string; controller: string }>(
    o.cli,
    ['controller', 'token', 'create', '--state-dir', o.controller.stateDir, '--name', plan.name, '--json'],
    { env: o.controller.env },
  );
  const tokenFile = join(home, 'join-token');
  await writeFile(tokenFile, `${token.token}\n`, { mode: 0o600 });
  const prefix = plan.prefix ?? [];
  const node = o.cli.node ?? process.execPath;
  try {
    const installed = await runCorralIn(prefix, node, o.cli.bin, [
      'worker',
      'install',
      '--controller',
      token.controller,
      '--ca-pin',
      token.caPin,
      '--name',
      plan.name,
      '--token-file',
      tokenFile,
      '--address',
      plan.address,
      '--listen-address',
      plan.address,
      '--agent-port',
      String(agentPort),
      '--updater-port',
      String(updaterPort),
      '--heartbeat-interval',
      `${o.heartbeatIntervalMs}ms`,
      '--prefix',
      prefixDir,
      '--state-dir',
      stateDir,
      '--config-dir',
      configDir,
      '--release-from',
      o.releaseFrom,
      '--no-systemd',
      '--no-start',
      '--json',
    ]);
    if (installed.code !== 0)
      throw new CorralError(
        ErrorCode.COMMAND_FAILED,
        `${plan.name}: worker install exited ${installed.code}: ${installed.stderr.trim()}`,
      );
  } finally {
    await rm(tokenFile, { force: true });
  }
  const hostId = (
    JSON.parse(await readFile(join(stateDir, 'bundle', 'manifest.json'), 'utf8')) as { hostId: string }
  ).hostId;
  const logDir = join(home, 'daemon-logs');
  await mkdir(logDir, { recursive: true, mode: 0o700 });
  const updater = await spawnDaemon({
    name: `${plan.name}/updater`,
    command: prefix[0] ?? node,
    args: [
      ...(prefix.length > 0 ? [...prefix.slice(1), node] : []),
      join(prefixDir, 'self', 'current', 'bin', 'corral.js'),
      'updater',
      'serve',
      '--config',
      join(configDir, 'worker.yaml'),
    ],
    logFile: join(logDir, 'updater.log'),
    env: isolatedEnv(),
    cwd: stateDir,
  });
  try {
    await waitUntil(
      `${plan.name} node`,
      updater,
      async () => {
        const e = await readEndpointsFile(stateDir).catch(() => undefined /* half-written: retry */);
        return e?.agent !== undefined && e.updater !== undefined;
      },
      o.startTimeoutMs ?? DEFAULT_START_TIMEOUT_MS,
    );
  } catch (e: unknown) {
    await updater.stop(UPDATER_STOP_GRACE_MS);
    throw e;
  }
  return {
    name: plan.name,
    hostId,
    stateDir,
    address: plan.address,
    agentPort,
    updaterPort,
    agent: updater,
    updater,
    forwarder: undefined,
    startAgent: () =>
      Promise.reject(
        new CorralError(ErrorCode.CONFLICT, 'an installed worker’s agent is restarted by its updater'),
      ),
    async stopDaemons() {
      await updater.stop(UPDATER_STOP_GRACE_MS);
    },
    stopServices: () => stopServicesIn(plan.name, stateDir),
  };
}

/** The updater stops the agent and the forwarder first (each up to 10 s), so it gets longer. */
const UPDATER_STOP_GRACE_MS = 30_000;

function runCorralIn(
  prefix: readonly string[],
  node: string,
  bin: string,
  args: readonly string[],
): Promise<{ code: number; stderr: string }> {
  return new Promise((resolve) => {
    execFile(
      prefix[0] ?? node,
      [...(prefix.length > 0 ? [...prefix.slice(1), node] : []), bin, ...args],
      { env: isolatedEnv(), timeout: 600_000, maxBuffer: 16 * 1024 * 1024 },
      (error, _stdout, stderr) =>
        resolve({ code: error ? (typeof error.code === 'number' ? error.code : 1) : 0, stderr }),
    );
  });
}

async function stopServicesIn(name: string, stateDir: string): Promise<string[]> {
  const { planFromDisk, runReaper, serviceDirs, DEFAULT_STOP_GRACE_MS } =
    await import('../../agent/index.js');
  const found = await planFromDisk(
    stateDir,
    { stateDir, installDirs: [], extraDirs: [], keepDirs: [], units: [], logFile: null },
    serviceDirs(join(stateDir, 'services')),
    DEFAULT_STOP_GRACE_MS,
  );
  const report = await runReaper({ ...found, deleteDirs: [], keepDirs: [], units: [], logFile: null });
  if (report.errors.length > 0)
    throw new CorralError(ErrorCode.PROCESS_FAILED, `${name}: ${report.errors.join('; ')}`);
  return report.stoppedServices;
}

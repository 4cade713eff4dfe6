import { stringify } from 'yaml';
import { CliExit, EXIT_USAGE } from '../exit.js';
import { loadConfigFile, parseConfigDuration, type ConfigSpec } from './config-file.js';

const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;

/**
 * `worker.yaml`: one file for the three daemons of a worker. Each reads the top-level keys and
 * its own section; flags given on a command line win over the file.
 */
export const WORKER_CONFIG_SPEC = {
  stateDir: { kind: 'path' },
  agent: {
    listen: { kind: 'hostPort' },
    logLevel: { kind: 'string', allowed: LOG_LEVELS },
    logFile: { kind: 'path' },
    heartbeatInterval: { kind: 'duration' },
    installDirs: { kind: 'paths' },
    extraDirs: { kind: 'paths' },
    keepDirs: { kind: 'paths' },
    units: { kind: 'strings' },
    systemd: { kind: 'bool' },
    stopGrace: { kind: 'duration' },
    concurrency: { kind: 'int', min: 1, max: 256 },
    containerSocket: { kind: 'path' },
    volumeDirs: { kind: 'paths' },
    workingDirs: { kind: 'paths' },
  },
  updater: {
    listen: { kind: 'hostPort' },
    root: { kind: 'path' },
    agentStateDir: { kind: 'path' },
    agentRestartCommand: { kind: 'strings' },
    selfRestartCommand: { kind: 'strings' },
    keep: { kind: 'int', min: 2, max: 32 },
    maxReleaseBytes: { kind: 'int', min: 1 },
    healthTimeout: { kind: 'duration' },
    watch: { kind: 'duration', zero: true },
    superviseForwarder: { kind: 'bool' },
    logLevel: { kind: 'string', allowed: LOG_LEVELS },
  },
  forwarder: {
    files: { kind: 'paths' },
    controller: { kind: 'hostPort' },
    mode: { kind: 'string', allowed: ['corral', 'rfc5425'] },
    pollInterval: { kind: 'duration' },
    logLevel: { kind: 'string', allowed: LOG_LEVELS },
  },
} as const satisfies ConfigSpec;

export interface WorkerConfig {
  stateDir?: string;
  agent?: {
    listen?: string;
    logLevel?: string;
    logFile?: string;
    heartbeatIntervalMs?: number;
    installDirs?: string[];
    extraDirs?: string[];
    keepDirs?: string[];
    units?: string[];
    systemd?: boolean;
    stopGraceMs?: number;
    concurrency?: number;
    containerSocket?: string;
    volumeDirs?: string[];
    workingDirs?: string[];
  };
  updater?: {
    listen?: string;
    root?: string;
    agentStateDir?: string;
    agentRestartCommand?: string[];
    selfRestartCommand?: string[];
    keep?: number;
    maxReleaseBytes?: number;
    healthTimeoutMs?: number;
    watchMs?: number;
    superviseForwarder?: boolean;
    logLevel?: string;
  };
  forwarder?: {
    files?: string[];
    controller?: string;
    mode?: string;
    pollIntervalMs?: number;
    logLevel?: string;
  };
}

/** Durations are written `heartbeatInterval: 30s` and held as `heartbeatIntervalMs`. */
function renameDurations(section: Record<string, unknown> | undefined): Record<string, unknown> | undefined {
  if (!section) return undefined;
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(section)) {
    const isDuration = ['heartbeatInterval', 'stopGrace', 'healthTimeout', 'watch', 'pollInterval'].includes(
      k,
    );
    out[isDuration ? `${k}Ms` : k] = v;
  }
  return out;
}

/** Reads and checks a worker config file (see WORKER_CONFIG_SPEC); exit 2 on anything wrong. */
export async function loadWorkerConfig(path: string | undefined): Promise<WorkerConfig> {
  if (path === undefined) return {};
  const raw = await loadConfigFile(path, WORKER_CONFIG_SPEC);
  const config: Record<string, unknown> = { ...raw };
  for (const section of ['agent', 'updater', 'forwarder'])
    config[section] = renameDurations(raw[section] as Record<string, unknown> | undefined);
  return config;
}

/**
 * A flag's duration (`--watch 30s`): the same spelling as in a config file. A bad one is a
 * usage error naming the flag.
 */
export function durationFlag(flag: string, value: string, zero = false): number {
  try {
    return parseConfigDuration(value, zero);
  } catch (e: unknown) {
    throw new CliExit(EXIT_USAGE, `${flag}: ${e instanceof Error ? e.message : String(e)}`);
  }
}

/** The text of a worker.yaml as install writes it. */
export function renderWorkerConfig(c: {
  stateDir: string;
  root: string;
  configDir: string;
  agentListen: string;
  updaterListen: string;
  systemd: boolean;
  units: readonly string[];
  logFile: string;
  heartbeatInterval?: string;
}): string {
  const doc = {
    stateDir: c.stateDir,
    agent: {
      listen: c.agentListen,
      logFile: c.logFile,
      heartbeatInterval: c.heartbeatInterval ?? '30s',
      installDirs: [c.root],
      extraDirs: [c.configDir],
      units: [...c.units],
      systemd: c.systemd,
    },
    updater: {
      listen: c.updaterListen,
      root: c.root,
      healthTimeout: '30s',
      watch: '30s',
      keep: 3,
      ...(c.systemd
        ? {
            agentRestartCommand: ['systemctl', 'restart', 'corral-agent'],
            superviseForwarder: false,
          }
        : {}),
    },
    forwarder: { files: [c.logFile], mode: 'corral', pollInterval: '250ms' },
  };
  return `# Corral worker configuration, read by corral agent, updater and forwarder (--config).
# Flags on a command line win over this file. Durations carry their unit: 250ms, 30s, 5m.
${stringify(doc)}`;
}

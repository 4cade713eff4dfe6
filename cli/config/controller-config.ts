import { stringify } from 'yaml';
import { loadConfigFile, type ConfigSpec } from './config-file.js';

const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;

/** `controller.yaml`, read by `corral controller serve --config`; flags win over it. */
export const CONTROLLER_CONFIG_SPEC = {
  stateDir: { kind: 'path' },
  /** `sqlite:PATH` or `postgres://…` (default: `corral.db` in the state dir); `--database` wins. */
  database: { kind: 'string' },
  controller: {
    adminListen: { kind: 'hostPort' },
    workerListen: { kind: 'hostPort' },
    /** The host workers dial this controller at (`--advertise`). */
    advertise: { kind: 'string' },
    joinListen: { kind: 'hostPort' },
    syslogListen: { kind: 'hostPort' },
    joinAllowedCidrs: { kind: 'strings' },
    heartbeatInterval: { kind: 'duration' },
    heartbeatRate: { kind: 'int', min: 1, max: 10_000 },
    heartbeatBytes: { kind: 'string' },
    eventMaxAge: { kind: 'duration' },
    eventsPerHost: { kind: 'int', min: 1 },
    fleetEventMaxAge: { kind: 'duration' },
    fleetEventsMax: { kind: 'int', min: 1 },
    logLevel: { kind: 'string', allowed: LOG_LEVELS },
    /** A duration (`5m`) or `off`. */
    rescheduleAfter: { kind: 'string' },
    /** A failed service's retries by the controller: the wait before each, and how many. */
    retryCooldown: { kind: 'duration' },
    retryMax: { kind: 'int', min: 0, max: 1000 },
    /** How long a deploy's services must run on a host before its step succeeds (0: no gate). */
    minHealthy: { kind: 'duration', zero: true },
  },
  /** The hosts' ingest files (`logs/hosts/`): rotation size and retention of rotated files. */
  logs: {
    max_file_mb: { kind: 'int', min: 1, max: 65_536 },
    keep_days: { kind: 'int', min: 1, max: 36_500 },
    keep_files: { kind: 'int', min: 1, max: 100_000 },
  },
  /**
   * How many other operators must approve each action (0 or absent: none); `expireAfter` the
   * wait. `update: { count: N, all: true }`: only pushes to all hosts need approval.
   */
  approvals: {
    decommission: { kind: 'int', min: 0, max: 10 },
    teardown: { kind: 'int', min: 0, max: 10 },
    update: { kind: 'countRule', max: 10, flags: ['all'] },
    drain: { kind: 'int', min: 0, max: 10 },
    operators: { kind: 'int', min: 0, max: 10 },
    reschedule: { kind: 'int', min: 0, max: 10 },
    heal: { kind: 'int', min: 0, max: 10 },
    expireAfter: { kind: 'duration' },
  },
  /**
   * The controller's own encrypted backups: into `dir`, with the passphrase of `passphraseFile`
   * (0600, read at start), every `every` when given and before each decommission and teardown
   * of everything; the newest `keep` are kept.
   */
  backup: {
    dir: { kind: 'path' },
    passphraseFile: { kind: 'path' },
    every: { kind: 'duration' },
    keep: { kind: 'int', min: 1, max: 10_000 },
  },
  /** Several controllers on one PostgreSQL database: how often all shared state is read again. */
  cluster: {
    resync: { kind: 'duration' },
  },
} as const satisfies ConfigSpec;

export interface ControllerConfig {
  stateDir?: string;
  database?: string;
  controller?: {
    adminListen?: string;
    workerListen?: string;
    advertise?: string;
    joinListen?: string;
    syslogListen?: string;
    joinAllowedCidrs?: string[];
    heartbeatInterval?: number;
    heartbeatRate?: number;
    heartbeatBytes?: string;
    eventMaxAge?: number;
    eventsPerHost?: number;
    fleetEventMaxAge?: number;
    fleetEventsMax?: number;
    logLevel?: string;
    rescheduleAfter?: string;
    retryCooldown?: number;
    retryMax?: number;
    minHealthy?: number;
  };
  logs?: { max_file_mb?: number; keep_days?: number; keep_files?: number };
  approvals?: {
    decommission?: number;
    teardown?: number;
    update?: number | { count: number; all?: boolean };
    drain?: number;
    operators?: number;
    reschedule?: number;
    heal?: number;
    expireAfter?: number;
  };
  backup?: { dir?: string; passphraseFile?: string; every?: number; keep?: number };
  cluster?: { resync?: number };
}

/** Reads and checks a controller config file; durations come back in ms. Exit 2 on anything wrong. */
export async function loadControllerConfig(path: string | undefined): Promise<ControllerConfig> {
  return path === undefined ? {} : await loadConfigFile(path, CONTROLLER_CONFIG_SPEC);
}

/** The text of a controller.yaml as install writes it. */
export function renderControllerConfig(c: {
  stateDir: string;
  adminListen: string;
  workerListen: string;
}): string {
  const doc = {
    stateDir: c.stateDir,
    controller: {
      adminListen: c.adminListen,
      workerListen: c.workerListen,
      heartbeatInterval: '30s',
      logLevel: 'info',
    },
  };
  return `# Corral controller configuration, read by corral controller serve (--config).
# Flags on a command line win over this file. Durations carry their unit: 250ms, 30s, 5m.
${stringify(doc)}`;
}

import { dirname, join } from 'node:path';
import { Type, type Static } from '@sinclair/typebox';
import type { Logger } from 'pino';
import { DEFAULT_HEARTBEAT_INTERVAL_MS } from '../protocol/constants.js';
import { CorralError, ErrorCode } from '../protocol/errors.js';
import { parseWith } from '../protocol/validate.js';
import { WORKER_LOG_FILE } from '../protocol/agent-api.js';
import { AGENT_HEALTH_SOCKET } from '../protocol/agent-local.js';
import { INSTANCE_TOKEN_RE } from '../protocol/pid-file.js';
import type { AgentOptions } from './agent-options.js';
import { DESIRED_STATE_FILE } from './reconcile/desired-store.js';
import { OUTBOX_FILE } from './link/event-outbox.js';
import { BUNDLE_DIR } from './agent-identity.js';
import { SERVICES_DIR } from './state/state-check.js';
import { DEFAULT_RENEW_BEFORE_MS } from './link/renewal.js';
import { DEFAULT_RESTART_LIMITS } from './supervise/restart-policy.js';
import { engineSocket } from './runtime/docker-engine.js';

/** Every default the agent runs with, in one place; `createAgent` has no literals of its own. */
export const AGENT_DEFAULTS = Object.freeze({
  /** Services start from this PATH when no `baseEnv` is given. */
  path: '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin',
  /** How often service output is copied into the worker log, in ms. */
  logPollMs: 500,
  /** How often re-adopted processes are checked, in ms. */
  adoptPollMs: 1000,
  /** How long a stopped service has between SIGTERM and SIGKILL when its spec names none, in ms. */
  stopGraceMs: 10_000,
  /** Reconcile steps of one kind run this many at a time. */
  concurrency: 16,
  heartbeat: Object.freeze({
    intervalMs: DEFAULT_HEARTBEAT_INTERVAL_MS,
    /** The interval the controller asks for is kept within these, in ms. */
    minIntervalMs: 1000,
    maxIntervalMs: 10 * 60_000,
    /** Backoff while the controller is unreachable: full jitter from base, capped, in ms. */
    backoffBaseMs: 1000,
    backoffCapMs: 60_000,
    /** Certificates are renewed this long before they expire, in ms. */
    renewBeforeMs: DEFAULT_RENEW_BEFORE_MS,
  }),
  restart: Object.freeze({ ...DEFAULT_RESTART_LIMITS }),
  systemd: 'auto' as const,
});

const Ms = Type.Number({ minimum: 1, maximum: Number.MAX_SAFE_INTEGER });
const Paths = Type.Array(Type.String({ minLength: 1 }), { maxItems: 256 });

export const DEFAULT_STOP_GRACE_MS = AGENT_DEFAULTS.stopGraceMs;
const ROOT_FILESYSTEM = '/';

const HeartbeatSettings = Type.Object({
  intervalMs: Ms,
  minIntervalMs: Ms,
  maxIntervalMs: Ms,
  backoffBaseMs: Ms,
  backoffCapMs: Ms,
  renewBeforeMs: Ms,
});
/** Checked on its own first, so a refusal names the field rather than the union. */
const HeartbeatField = Type.Object({ heartbeat: HeartbeatSettings });

/** What the agent runs with, as data: checked by `agentConfig` before anything starts. */
const AgentSettings = Type.Object({
  stateDir: Type.String({ minLength: 1 }),
  listen: Type.Object({
    host: Type.String({ minLength: 1 }),
    port: Type.Integer({ minimum: 0, maximum: 65_535 }),
  }),
  version: Type.String({ minLength: 1, maxLength: 64 }),
  /** The starting updater's instance token, recorded in `run/agent.pid`; null: started by hand. */
  instance: Type.Union([Type.Null(), Type.String({ pattern: INSTANCE_TOKEN_RE.source })]),
  logFile: Type.String({ minLength: 1 }),
  baseEnv: Type.Record(Type.String({ minLength: 1 }), Type.String()),
  /** null: no heartbeats and no renewal (tests of the API alone). */
  heartbeat: Type.Union([Type.Null(), HeartbeatSettings]),
  restart: Type.Object({
    maxRestarts: Type.Integer({ minimum: 0 }),
    windowMs: Ms,
    baseDelayMs: Ms,
    maxDelayMs: Ms,
  }),
  adoptPollMs: Ms,
  logPollMs: Ms,
  defaultStopGraceMs: Type.Number({ minimum: 0, maximum: Number.MAX_SAFE_INTEGER }),
  concurrency: Type.Integer({ minimum: 1, maximum: 1024 }),
  reinitialize: Type.Boolean(),
  allowedWorkingDirs: Paths,
  containers: Type.Object({
    socket: Type.String({ minLength: 1, maxLength: 1024 }),
    allowedVolumeDirs: Paths,
  }),
  selfDestruct: Type.Object({
    installDirs: Paths,
    extraDirs: Paths,
    keepDirs: Paths,
    units: Type.Array(Type.String({ minLength: 1 }), { maxItems: 64 }),
    /** argv of `corral agent reap` (the plan file is appended); null: self-destruct is refused. */
    reaperCommand: Type.Union([Type.Null(), Type.Array(Type.String(), { minItems: 1, maxItems: 64 })]),
    systemd: Type.Union([Type.Literal('auto'), Type.Literal('never')]),
  }),
});

type DeepReadonly<T> = T extends (infer E)[]
  ? readonly DeepReadonly<E>[]
  : T extends object
    ? { readonly [K in keyof T]: DeepReadonly<T[K]> }
    : T;

/** Where the agent keeps what, under its state dir. */
export interface AgentPaths {
  /** The enrolled identity. */
  readonly bundleDir: string;
  /** Pid file (`run/agent.pid`, claimed through kit/pid-file), local health socket (0700). */
  readonly runDir: string;
  readonly healthSocket: string;
  readonly servicesDir: string;
  readonly desiredStateFile: string;
  readonly outboxFile: string;
  /** Filesystems whose free space diagnostics report. */
  readonly diskPaths: readonly string[];
}

/** createAgent's whole configuration: every default applied, checked, and frozen. */
export type AgentConfig = DeepReadonly<Static<typeof AgentSettings>> & {
  readonly paths: AgentPaths;
  readonly log: Logger;
  readonly now: () => number;
  readonly random: () => number;
};

export function agentPaths(stateDir: string): AgentPaths {
  return Object.freeze({
    bundleDir: join(stateDir, BUNDLE_DIR),
    runDir: dirname(join(stateDir, AGENT_HEALTH_SOCKET)),
    healthSocket: join(stateDir, AGENT_HEALTH_SOCKET),
    servicesDir: join(stateDir, SERVICES_DIR),
    desiredStateFile: join(stateDir, DESIRED_STATE_FILE),
    outboxFile: join(stateDir, OUTBOX_FILE),
    diskPaths: Object.freeze([stateDir, ROOT_FILESYSTEM]),
  });
}

function deepFreeze<T>(value: T): T {
  if (typeof value === 'object' && value !== null && !Object.isFrozen(value)) {
    for (const v of Object.values(value)) deepFreeze(v);
    Object.freeze(value);
  }
  return value;
}

/**
 * Resolves `createAgent`'s options into its configuration: AGENT_DEFAULTS for everything not
 * given, then checked (CORRAL_ERR_VALIDATION naming the field: a duration that is not a
 * positive number of ms, a port out of range, heartbeat bounds the wrong way round).
 */
export function agentConfig(o: AgentOptions): AgentConfig {
  const d = AGENT_DEFAULTS;
  const hb = o.heartbeat ?? {};
  const sd = o.selfDestruct ?? {};
  const r = o.restart ?? {};
  const heartbeat =
    hb.enabled === false
      ? null
      : parseWith(
          HeartbeatField,
          {
            heartbeat: {
              intervalMs: hb.intervalMs ?? d.heartbeat.intervalMs,
              minIntervalMs: hb.minIntervalMs ?? d.heartbeat.minIntervalMs,
              maxIntervalMs: hb.maxIntervalMs ?? d.heartbeat.maxIntervalMs,
              backoffBaseMs: hb.backoffBaseMs ?? d.heartbeat.backoffBaseMs,
              backoffCapMs: hb.backoffCapMs ?? d.heartbeat.backoffCapMs,
              renewBeforeMs: hb.renewBeforeMs ?? d.heartbeat.renewBeforeMs,
            },
          },
          'agent config',
        ).heartbeat;
  const settings = parseWith(
    AgentSettings,
    {
      stateDir: o.stateDir,
      listen: { host: o.listen.host, port: o.listen.port },
      version: o.version,
      instance: o.instance ?? null,
      logFile: o.logFile ?? join(o.stateDir, WORKER_LOG_FILE),
      baseEnv: { ...(o.baseEnv ?? { PATH: d.path }) },
      heartbeat,
      restart: {
        maxRestarts: r.maxRestarts ?? d.restart.maxRestarts,
        windowMs: r.windowMs ?? d.restart.windowMs,
        baseDelayMs: r.baseDelayMs ?? d.restart.baseDelayMs,
        maxDelayMs: r.maxDelayMs ?? d.restart.maxDelayMs,
      },
      adoptPollMs: o.adoptPollMs ?? d.adoptPollMs,
      logPollMs: o.logPollMs ?? d.logPollMs,
      defaultStopGraceMs: o.defaultStopGraceMs ?? d.stopGraceMs,
      concurrency: o.concurrency ?? d.concurrency,
      reinitialize: o.reinitialize ?? false,
      allowedWorkingDirs: [...(o.allowedWorkingDirs ?? [])],
      containers: {
        socket: engineSocket(o.containers?.socket),
        allowedVolumeDirs: [...(o.containers?.allowedVolumeDirs ?? [])],
      },
      selfDestruct: {
        installDirs: [...(sd.installDirs ?? [])],
        extraDirs: [...(sd.extraDirs ?? [])],
        keepDirs: [...(sd.keepDirs ?? [])],
        units: [...(sd.units ?? [])],
        reaperCommand: sd.reaperCommand ? [...sd.reaperCommand] : null,
        systemd: sd.systemd ?? d.systemd,
      },
    },
    'agent config',
  );
  if (settings.heartbeat && settings.heartbeat.minIntervalMs > settings.heartbeat.maxIntervalMs) {
    throw new CorralError(
      ErrorCode.VALIDATION,
      `agent config: /heartbeat/minIntervalMs (${settings.heartbeat.minIntervalMs}) is above /heartbeat/maxIntervalMs (${settings.heartbeat.maxIntervalMs})`,
    );
  }
  // The logger and the clock are the caller's objects: only the settings are frozen deep.
  return Object.freeze({
    ...deepFreeze(settings),
    paths: agentPaths(settings.stateDir),
    log: o.log,
    now: o.now ?? Date.now,
    random: o.random ?? Math.random,
  });
}

import type { Logger } from 'pino';
import type { HeartbeatTiming } from './link/heartbeat-loop.js';
import type { SystemdMode } from './self-destruct/reaper-launch.js';
import type { RestartLimits } from './supervise/restart-policy.js';

/** Every field optional; undefined means the default. */
type Unset<T> = { readonly [K in keyof T]?: T[K] | undefined };

/**
 * What `createAgent` is given; agentConfig (agent-config.ts) fills in every default and checks
 * it. A field left out or undefined takes its default (AGENT_DEFAULTS).
 */
export interface AgentOptions {
  /** Holds `bundle/` (the enrolled identity), `services/`, `run/`, `logs/`, state files. */
  readonly stateDir: string;
  readonly listen: { readonly host: string; readonly port: number };
  /** The version the agent reports (health, local health, heartbeats). */
  readonly version: string;
  /**
   * The instance token of the updater that started this agent (its `CORRAL_AGENT_INSTANCE`),
   * recorded in `run/agent.pid` so a restarted updater adopts this agent again.
   */
  readonly instance?: string;
  readonly log: Logger;
  readonly now?: (() => number) | undefined;
  readonly random?: (() => number) | undefined;
  /** The worker's RFC 5424 log (default `<state>/logs/worker.log`). */
  readonly logFile?: string | undefined;
  /** Environment every service starts from; the spec's env goes on top. */
  readonly baseEnv?: Readonly<Record<string, string>> | undefined;
  readonly heartbeat?: Unset<HeartbeatTiming> & {
    /** Off: no heartbeats, no renewal (tests of the API alone). */
    readonly enabled?: boolean;
    readonly renewBeforeMs?: number | undefined;
  };
  readonly restart?: Unset<RestartLimits>;
  /** How often re-adopted processes are checked, in ms. */
  readonly adoptPollMs?: number | undefined;
  /** How often service output is copied into the worker log, in ms. */
  readonly logPollMs?: number | undefined;
  readonly defaultStopGraceMs?: number | undefined;
  /** Steps of one kind run this many at a time. */
  readonly concurrency?: number | undefined;
  /**
   * Replace state files that are missing or damaged (moved aside as `*.damaged-TIME`) instead
   * of refusing to start; what that destroys is in the result and the log.
   */
  readonly reinitialize?: boolean | undefined;
  /** Directories a process service's workingDir may lie in; none: workingDir is refused. */
  readonly allowedWorkingDirs?: readonly string[] | undefined;
  /** The container engine `runtime: container` services run on. */
  readonly containers?: {
    /** Its Unix socket (default: DOCKER_HOST when it is unix://, else /var/run/docker.sock). */
    readonly socket?: string | undefined;
    /** Host directories bind mounts may come from; none: every bind mount is refused. */
    readonly allowedVolumeDirs?: readonly string[] | undefined;
  };
  readonly selfDestruct?: {
    readonly installDirs?: readonly string[];
    readonly extraDirs?: readonly string[];
    readonly keepDirs?: readonly string[];
    readonly units?: readonly string[];
    /** argv of `corral agent reap`; the plan file is appended. Without it self-destruct is refused. */
    readonly reaperCommand?: readonly string[];
    readonly systemd?: SystemdMode;
  };
}

export { WORKER_LOG_FILE } from '../protocol/agent-api.js';

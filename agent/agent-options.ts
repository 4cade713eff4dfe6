import type { Logger } from 'pino';
import type { HeartbeatTiming } from './heartbeat-loop.js';
import type { SystemdMode } from './reaper-launch.js';
import type { RestartLimits } from './restart-policy.js';

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
  readonly now?: () => number;
  readonly random?: () => number;
  /** The worker's RFC 5424 log (default `<state>/logs/worker.log`). */
  readonly logFile?: string;
  /** Environment every service starts from; the spec's env goes on top. */
  readonly baseEnv?: Readonly<Record<string, string>>;
  readonly heartbeat?: Partial<HeartbeatTiming> & {
    /** Off: no heartbeats, no renewal (tests of the API alone). */
    readonly enabled?: boolean;
    readonly renewBeforeMs?: number;
  };
  readonly restart?: Partial<RestartLimits>;
  /** How often re-adopted processes are checked, in ms. */
  readonly adoptPollMs?: number;
  /** How often service output is copied into the worker log, in ms. */
  readonly logPollMs?: number;
  readonly defaultStopGraceMs?: number;
  /** Steps of one kind run this many at a time. */
  readonly concurrency?: number;
  /**
   * Replace state files that are missing or damaged (moved aside as `*.damaged-TIME`) instead
   * of refusing to start; what that destroys is in the result and the log.
   */
  readonly reinitialize?: boolean;
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

export const DEFAULT_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';
export const DEFAULT_LOG_POLL_MS = 500;
export const DEFAULT_ADOPT_POLL_MS = 1000;
export const DEFAULT_STOP_GRACE_MS = 10_000;
export const DEFAULT_CONCURRENCY = 16;
export { WORKER_LOG_FILE } from '../protocol/agent-api.js';

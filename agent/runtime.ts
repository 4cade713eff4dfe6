import type { ServiceSpec } from '../protocol/service-spec.js';
import type { ProcessIdentity } from '../kit/proc.js';
import type { ExitInfo } from './restart-policy.js';

/** What the agent persists to find a service's process again after it restarts. */
export interface ProcessRecord extends ProcessIdentity {
  /** Process group (= session) the service runs in; stop signals go to the whole group. */
  readonly pgid: number;
}

/** A running (or just ended) service process the runtime watches. */
export interface RunHandle {
  readonly record: ProcessRecord;
  /** Resolves once when the process has ended. */
  readonly exited: Promise<ExitInfo>;
  /** Stops watching, leaving the process alone (the agent is shutting down). */
  detach(): void;
}

export interface StartRequest {
  /** Resolved spec (host variables already substituted). */
  readonly spec: ServiceSpec;
  readonly cwd: string;
  readonly env: Readonly<Record<string, string>>;
  readonly stdoutPath: string;
  readonly stderrPath: string;
}

/**
 * A way of running services. `process` is the first; container runtimes would implement the
 * same contract. Implementations never start a second copy on their own: `start` is only
 * called by the supervisor when nothing of that service runs.
 */
export interface Runtime {
  readonly kind: ServiceSpec['runtime'];
  /** Starts the service detached from the agent; rejects when it cannot be started at all. */
  start(request: StartRequest): Promise<RunHandle>;
  /** Watches a process a previous agent started; `exited` resolves at once if it is gone. */
  adopt(record: ProcessRecord): Promise<RunHandle>;
  /** SIGTERM to the process group, SIGKILL after `graceMs`; resolves when the group is gone. */
  stop(handle: RunHandle, graceMs: number): Promise<void>;
  close(): void;
}

import type { ServiceRuntime, ServiceSpec } from '../../protocol/service-spec.js';
import type { ProcessIdentity } from '../../kit/proc.js';
import type { ExitInfo } from '../supervise/restart-policy.js';

/** A process service's process group, found again by pid, start time and boot id. */
export interface ProcessRef extends ProcessIdentity {
  readonly kind: 'process';
  /** Process group (= session) the service runs in; stop signals go to the whole group. */
  readonly pgid: number;
}

/** A container service's container, found again by its engine id. */
export interface ContainerRef {
  readonly kind: 'container';
  /** The engine's full container id (64 hex digits). */
  readonly id: string;
  readonly name: string;
  readonly image: string;
}

/** What the agent persists to find a service's workload again after it restarts. */
export type RuntimeRef = ProcessRef | ContainerRef;
export type RuntimeKind = ServiceRuntime;

/** True when both references name the same workload (not merely the same service). */
export function sameWorkload(a: RuntimeRef, b: RuntimeRef): boolean {
  if (a.kind === 'process' && b.kind === 'process') return a.pid === b.pid && a.startTime === b.startTime;
  if (a.kind === 'container' && b.kind === 'container') return a.id === b.id;
  return false;
}

/** The pid a reference names on this host, if any (a container's is only known while it runs). */
export function refPid(ref: RuntimeRef): number | null {
  return ref.kind === 'process' ? ref.pid : null;
}

/** A running (or just ended) workload the runtime watches. */
export interface RunHandle {
  readonly ref: RuntimeRef;
  /** Its main process on this host, when known. */
  readonly pid: number | null;
  /** Resolves once when the workload has ended. */
  readonly exited: Promise<ExitInfo>;
  /** Stops watching (and following logs), leaving the workload alone (the agent is shutting down). */
  detach(): void;
}

/** Marks every workload the agent starts, so the next agent finds what no record names. */
export interface WorkloadLabels {
  readonly service: string;
  /** The agent instance (see orphans.ts agentInstance). */
  readonly instance: string;
  readonly specHash: string;
}

/** Where a workload's stdout and stderr go: append-only files log-capture.ts ships. */
export interface LogTarget {
  readonly stdoutPath: string;
  readonly stderrPath: string;
  /** A directory of the service's own, for the runtime's log cursor. */
  readonly serviceDir: string;
}

export interface StartRequest extends LogTarget {
  /** Resolved spec (host variables already substituted). */
  readonly spec: ServiceSpec;
  readonly cwd: string;
  readonly env: Readonly<Record<string, string>>;
  readonly labels: WorkloadLabels;
}

/** A workload of this agent instance found by the runtime's own discovery. */
export interface OwnedWorkload {
  readonly service: string;
  readonly ref: RuntimeRef;
  /** From its labels; undefined when they name none (started by an older agent). */
  readonly specHash: string | undefined;
  /** False for a container that has exited and was not removed yet (never adopted, only cleared). */
  readonly running: boolean;
}

/**
 * A way of running services, keyed by `kind` (the spec's `runtime`). Implementations never
 * start a second copy on their own: `start` is only called by the supervisor when nothing of
 * that service runs, and `listOwned` lets the agent find what a crashed agent left.
 */
export interface Runtime<K extends RuntimeKind = RuntimeKind> {
  readonly kind: K;
  /**
   * Refuses, at apply, a spec this runtime will not run on this host (CORRAL_ERR_VALIDATION
   * naming the field under `where`): a volume outside the allowed dirs, a limit it cannot enforce.
   */
  check(spec: ServiceSpec, where: string): void;
  /** Starts the workload detached from the agent; rejects when it cannot be started at all. */
  start(request: StartRequest): Promise<RunHandle>;
  /** Watches a workload a previous agent started; `exited` resolves at once if it is gone. */
  adopt(ref: RuntimeRef): Promise<RunHandle>;
  /** True while the reference still names a live workload of ours. */
  inspect(ref: RuntimeRef): Promise<boolean>;
  /** Stops the workload (SIGTERM, then SIGKILL after `graceMs`) and removes what it leaves. */
  stop(ref: RuntimeRef, graceMs: number): Promise<void>;
  /** Every workload labelled with `instance`, running or not, by service. */
  listOwned(instance: string): Promise<OwnedWorkload[]>;
  /**
   * Delivers the workload's stdout and stderr into `target` until it ends or `signal` aborts.
   * Processes write the files themselves (they are their descriptors); containers are followed.
   */
  logs(handle: RunHandle, target: LogTarget, signal: AbortSignal): void;
  /**
   * Runs `argv` inside the workload and resolves with its exit code (a container's `command`
   * health check). Absent: command checks run on the host, beside the process.
   */
  exec?(ref: RuntimeRef, argv: readonly string[], signal: AbortSignal): Promise<number>;
  close(): void;
}

/** The agent's runtimes by kind; a spec whose runtime has none here is refused at apply. */
export type Runtimes = ReadonlyMap<RuntimeKind, Runtime>;

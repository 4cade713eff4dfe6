import { setTimeout as sleep } from 'node:timers/promises';
import type { Logger } from 'pino';
import type { LifecycleEventType, ServiceState, ServiceStatus } from '../../protocol/heartbeat.js';
import type { ServiceSpec } from '../../protocol/service-spec.js';
import { healthLoop } from './health-loop.js';
import type { CurrentService, DesiredService } from '../reconcile/plan.js';
import { decideAfterExit, restartsInWindow, type ExitInfo, type RestartLimits } from './restart-policy.js';
import type { RunHandle, Runtime, RuntimeRef, Runtimes } from '../runtime/runtime.js';
import { CorralError, ErrorCode } from '../../protocol/errors.js';
import { MAX_RESTART_HISTORY, type ServiceDirs, type ServiceRecord } from './service-record.js';
import { streamFile } from '../logs/log-capture.js';
import { INSTANCE_ENV, SERVICE_ENV, SPEC_HASH_ENV } from '../runtime/orphans.js';
import { SingleFlight } from '../../kit/single-flight.js';

/** Launches and stops of one service that may wait for their turn (the agent sends a few at most). */
const SUPERVISOR_MAX_QUEUED = 64;

export interface ServiceEvent {
  readonly type: LifecycleEventType;
  readonly service: string;
  readonly detail?: string;
}

export interface SupervisorDeps {
  readonly runtimes: Runtimes;
  readonly dirs: ServiceDirs;
  readonly log: Logger;
  readonly limits: RestartLimits;
  readonly random: () => number;
  readonly now: () => number;
  /** Environment every service starts from (PATH and the like); the spec's env goes on top. */
  readonly baseEnv: Readonly<Record<string, string>>;
  readonly defaultStopGraceMs: number;
  /** Marks the workloads this agent starts (see orphans.ts). */
  readonly instance: string;
  emit(event: ServiceEvent): void;
}

export interface ServiceSupervisor {
  readonly name: string;
  spec(): ServiceSpec;
  current(): CurrentService;
  status(): ServiceStatus;
  pid(): number | null;
  /** What `services/<name>/state.json` holds (or is about to). */
  record(): ServiceRecord;
  /** Starts a fresh process for `desired` (restart history cleared). Resolves with the error, if any. */
  start(desired: DesiredService, generation: number): Promise<string | undefined>;
  /** Stops the process group (SIGTERM, then SIGKILL after the grace period). */
  stop(): Promise<void>;
  /**
   * Stops the process and starts it again on the same spec, counted as a restart (unlike
   * start(), the history is kept). Resolves with the error when it could not start.
   */
  restart(reason: string): Promise<string | undefined>;
  /** Watches a process a previous agent started (see restoreSupervisor). */
  adopt(handle: RunHandle): void;
  /** The record says the service was active but no process is left: handle it as an exit. */
  adoptGone(): void;
  /** Stops watching without touching the process: the agent is going away, the service is not. */
  detach(): void;
  /** Waits for pending record writes. */
  flush(): Promise<void>;
}

const ACTIVE: readonly ServiceState[] = ['starting', 'running', 'degraded', 'restarting'];

/**
 * Supervises one service: starts it, watches its exit, restarts it by policy with backoff,
 * gives up after too many restarts in the window, runs its health check, and records what the
 * next agent needs in `services/<name>/state.json`.
 *
 * Invariant: at most one process per service. Launches and stops take turns (`exclusive`),
 * so a replace or stop that arrives while a restart is spawning waits for that spawn and then
 * stops what it started, instead of launching beside it; and the record pairs a process with
 * the spec it was launched with. Every launch bumps `incarnation`; exit and health callbacks
 * of an older incarnation, or of a life that stop() aborted, do nothing.
 */
export function createSupervisor(deps: SupervisorDeps, initial: ServiceRecord): ServiceSupervisor {
  const name = initial.spec.name;
  const log = deps.log.child({ service: name });
  let spec = initial.spec;
  let specHash = initial.specHash;
  let generation = initial.generation;
  let state: ServiceState = initial.state;
  let restarts = initial.restarts;
  let restartTimes = [...initial.restartTimes];
  let lastError = initial.lastError;
  let since = initial.since;
  let handle: RunHandle | undefined;
  let incarnation = 0;
  let life = new AbortController();
  let writes: Promise<void> = Promise.resolve();
  /** The queue of launches and stops; see the invariant above. */
  const turns = new SingleFlight({ name: `service ${name}`, maxQueued: SUPERVISOR_MAX_QUEUED });
  /** Set by detach(): a process a launch in progress then starts is left for the next agent. */
  let detached = false;

  /** Runs `fn` after every launch or stop queued before it has finished. */
  function exclusive<T>(fn: () => Promise<T>): Promise<T> {
    return turns.run(fn);
  }

  const setState = (next: ServiceState): void => {
    if (next !== state) since = new Date(deps.now()).toISOString();
    state = next;
  };

  function record(): ServiceRecord {
    return {
      version: 2,
      spec,
      specHash,
      generation,
      state,
      ref: handle ? handle.ref : null,
      restarts,
      restartTimes: restartTimes.slice(-MAX_RESTART_HISTORY),
      lastError,
      since,
    };
  }

  function persist(durable: boolean): Promise<void> {
    const snapshot = record();
    writes = writes
      .then(() => deps.dirs.save(snapshot, durable))
      .catch((err: unknown) => log.error({ err }, 'service record not saved'));
    return writes;
  }

  function env(): Record<string, string> {
    return {
      ...deps.baseEnv,
      ...spec.env,
      [SERVICE_ENV]: name,
      [INSTANCE_ENV]: deps.instance,
      [SPEC_HASH_ENV]: specHash,
    };
  }

  function cwd(): string {
    return (spec.runtime === 'process' ? spec.workingDir : undefined) ?? deps.dirs.dir(name);
  }

  async function launch(signal: AbortSignal): Promise<void> {
    const dir = await deps.dirs.ensure(name);
    const h = await runtimeOf(deps, spec.runtime).start({
      spec,
      cwd: cwd(),
      env: env(),
      stdoutPath: streamFile(dir, 'stdout'),
      stderrPath: streamFile(dir, 'stderr'),
      serviceDir: dir,
      labels: { service: name, instance: deps.instance, specHash },
    });
    watch(h, signal);
    log.info({ pid: h.pid, ref: describeRef(h.ref), incarnation }, 'service started');
  }

  function watch(h: RunHandle, signal: AbortSignal): void {
    handle = h;
    const inc = ++incarnation;
    setState(spec.healthCheck ? 'starting' : 'running');
    void persist(true);
    if (detached) {
      h.detach();
      return;
    }
    const runtime = runtimeOf(deps, h.ref.kind);
    const dir = deps.dirs.dir(name);
    runtime.logs(
      h,
      { stdoutPath: streamFile(dir, 'stdout'), stderrPath: streamFile(dir, 'stderr'), serviceDir: dir },
      signal,
    );
    void h.exited.then((exit) => onExit(exit, inc, signal));
    if (spec.healthCheck) {
      const exec = runtime.exec?.bind(runtime);
      void healthLoop({
        check: spec.healthCheck,
        probe: {
          cwd: cwd(),
          env: env(),
          signal,
          ...(exec && { exec: (argv: readonly string[], s: AbortSignal) => exec(h.ref, argv, s) }),
        },
        alive: () => inc === incarnation && handle !== undefined && !signal.aborted,
        onHealthy: () => {
          if (state !== 'starting' && state !== 'degraded') return;
          setState('running');
          lastError = null;
          void persist(false);
        },
        onUnhealthy: (reason) => {
          if (state !== 'starting' && state !== 'running') return;
          setState('degraded');
          lastError = reason;
          deps.emit({ type: 'service-degraded', service: name, detail: reason });
          log.warn({ reason }, 'service degraded');
          void persist(false);
        },
      });
    }
  }

  async function onExit(exit: ExitInfo, inc: number, signal: AbortSignal): Promise<void> {
    if (inc !== incarnation || signal.aborted) return;
    handle = undefined;
    const now = deps.now();
    const decision = decideAfterExit({
      policy: spec.restart,
      exit,
      history: restartTimes,
      now,
      limits: deps.limits,
      random: deps.random,
    });
    if (decision.action === 'stop') {
      setState('stopped');
      lastError = null;
      log.info({ reason: decision.reason }, 'service ended');
      await persist(true);
      return;
    }
    if (decision.action === 'fail') {
      setState('failed');
      lastError = decision.reason;
      deps.emit({ type: 'service-failed', service: name, detail: decision.reason });
      log.warn({ reason: decision.reason }, 'service failed');
      await persist(true);
      return;
    }
    setState('restarting');
    lastError = decision.reason;
    await persist(true);
    log.info({ reason: decision.reason, delayMs: decision.delayMs }, 'service restarting');
    try {
      await sleep(decision.delayMs, undefined, { signal });
    } catch {
      return; // AbortError: stopped or replaced while waiting
    }
    const error = await exclusive(async (): Promise<string | undefined> => {
      // Re-checked in turn: a replace or stop queued meanwhile has superseded this restart.
      if (inc !== incarnation || signal.aborted) return undefined;
      restartTimes = [...restartsInWindow(restartTimes, deps.now(), deps.limits.windowMs), deps.now()];
      restarts++;
      deps.emit({
        type: 'service-restarted',
        service: name,
        detail: `${decision.reason}; restart ${restarts} after ${decision.delayMs} ms`,
      });
      try {
        await launch(signal);
        return undefined;
      } catch (e: unknown) {
        return e instanceof Error ? e.message : String(e);
      }
    });
    // Outside the turn: the next attempt queues a turn of its own.
    if (error !== undefined) await onExit({ known: true, code: null, signal: null, error }, inc, signal);
  }

  async function stopProcess(): Promise<void> {
    life.abort();
    life = new AbortController();
    const h = handle;
    if (!h) return;
    try {
      await runtimeOf(deps, h.ref.kind).stop(h.ref, spec.stopGraceMs ?? deps.defaultStopGraceMs);
    } finally {
      h.detach();
      handle = undefined;
    }
  }

  /** Launches the current spec; on failure marks the service failed and returns why (undefined: started). */
  async function launchOrFail(): Promise<string | undefined> {
    try {
      await launch(life.signal);
      return undefined;
    } catch (e: unknown) {
      lastError = `failed to start: ${e instanceof Error ? e.message : String(e)}`;
      setState('failed');
      deps.emit({ type: 'service-failed', service: name, detail: lastError });
      log.warn({ reason: lastError }, 'service failed');
      await persist(true);
      return lastError;
    }
  }

  return {
    name,
    spec: () => spec,
    pid: () => handle?.pid ?? null,
    record,
    current: () => ({ name, specHash, state, generation }),
    status: () => ({
      name,
      state,
      restarts,
      lastError,
      pid: handle?.pid ?? null,
      since,
      runtime: spec.runtime,
      ...(spec.runtime === 'container' && { image: spec.image }),
      ...(handle?.ref.kind === 'container' && { containerId: handle.ref.id }),
    }),

    start(desired, gen) {
      life.abort(); // at once: a restart waiting out its backoff gives up now
      return exclusive(async () => {
        await stopProcess();
        spec = desired.spec;
        specHash = desired.specHash;
        generation = gen;
        restarts = 0;
        restartTimes = [];
        lastError = null;
        setState('pending');
        return launchOrFail();
      });
    },

    stop() {
      life.abort();
      return exclusive(async () => {
        try {
          await stopProcess();
        } catch (e: unknown) {
          lastError = `stop failed: ${e instanceof Error ? e.message : String(e)}`;
          throw e;
        } finally {
          if (ACTIVE.includes(state) || state === 'pending') setState('stopped');
          await persist(true);
        }
      });
    },

    restart(reason) {
      life.abort(); // at once: a restart waiting out its backoff gives up now
      return exclusive(async () => {
        await stopProcess();
        restartTimes = [...restartsInWindow(restartTimes, deps.now(), deps.limits.windowMs), deps.now()];
        restarts++;
        lastError = null;
        setState('pending');
        deps.emit({ type: 'service-restarted', service: name, detail: `${reason}; restart ${restarts}` });
        return launchOrFail();
      });
    },

    adopt(h) {
      log.info({ pid: h.pid, ref: describeRef(h.ref) }, 'service re-adopted');
      watch(h, life.signal);
    },

    adoptGone() {
      void onExit({ known: false, code: null, signal: null }, incarnation, life.signal);
    },

    detach() {
      detached = true;
      life.abort();
      handle?.detach();
    },

    /** Waits for a launch or stop in progress, then for the record writes. */
    flush: () => turns.idle().then(() => writes),
  };
}

/**
 * Rebuilds a supervisor from a previous agent's record: re-adopts the process when pid, start
 * time and boot id still match (never starting a second copy); when the process died while no
 * agent watched, applies the restart policy as for any exit.
 */
export async function restoreSupervisor(
  deps: SupervisorDeps,
  rec: ServiceRecord,
): Promise<ServiceSupervisor> {
  const sup = createSupervisor(deps, rec);
  if (rec.ref) {
    const h = await runtimeOf(deps, rec.ref.kind).adopt(rec.ref);
    sup.adopt(h);
  } else if (ACTIVE.includes(rec.state)) {
    sup.adoptGone();
  }
  return sup;
}

/** The runtime of `kind`; a spec reaches a supervisor only after its runtime's check passed. */
export function runtimeOf(deps: { readonly runtimes: Runtimes }, kind: RuntimeRef['kind']): Runtime {
  const runtime = deps.runtimes.get(kind);
  if (!runtime) throw new CorralError(ErrorCode.VALIDATION, `this agent has no ${kind} runtime`);
  return runtime;
}

/** A reference as a log field: the pid, or the container's short id and name. */
export function describeRef(ref: RuntimeRef): string {
  return ref.kind === 'process' ? `pid ${ref.pid}` : `container ${ref.id.slice(0, 12)} (${ref.name})`;
}

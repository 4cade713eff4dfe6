import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import type { CorralCommand } from './corral-cli.js';
import { startLocalController, type LocalController } from './local-controller.js';
import { CorralError, ErrorCode } from '../../protocol/errors.js';
import { installLocalWorker, startLocalWorker, type LocalWorker, type WorkerPlan } from './local-worker.js';
import { runningRelease } from '../installation.js';
import { installReleaseZero } from '../install/release-zero.js';

export interface LocalFleetOptions {
  /** An existing directory the fleet owns: controller/ and one dir per worker go in it. */
  readonly dir: string;
  readonly cli: CorralCommand;
  readonly workers: readonly WorkerPlan[];
  readonly heartbeatIntervalMs: number;
  /** The address workers dial the controller at; default 127.0.0.1. */
  readonly controllerAddress?: string;
  /** Host the controller's worker-facing listeners bind; default `controllerAddress`. */
  readonly workerListenHost?: string;
  /** Run an updater per worker (default true). */
  readonly updater?: boolean;
  /**
   * Set each worker up with `corral worker install` (default false: a hand-started agent beside
   * an updater, for tests that kill agents): the updater then owns the agent and the forwarder,
   * as on a real server. `corral up` does this.
   */
  readonly install?: boolean;
  /** Run a forwarder per worker (default true; only when the controller has a syslog listener). */
  readonly forwarder?: boolean;
  /** Workers started at once (each runs `controller enroll` and waits for its daemons). */
  readonly concurrency?: number;
  readonly startTimeoutMs?: number;
  /** Aborting stops starting more workers; the start then fails and stops what it started. */
  readonly signal?: AbortSignal;
  /** Progress lines while starting and stopping. */
  readonly progress?: (line: string) => void;
  /** More `controller serve` flags. */
  readonly serveArgs?: readonly string[];
  /** More `controller init` flags. */
  readonly initArgs?: readonly string[];
}

export interface FleetStopReport {
  readonly servicesStopped: number;
  readonly errors: readonly string[];
}

/** A controller and its workers, every daemon a separate `corral` process. */
export interface LocalFleet extends AsyncDisposable {
  readonly dir: string;
  readonly controller: LocalController;
  readonly workers: readonly LocalWorker[];
  /** True when the workers run forwarders to the controller's syslog listener. */
  readonly syslog: boolean;
  worker(name: string): LocalWorker;
  /**
   * Stops everything it started, in order: the workers' daemons, then every service process
   * their records name, then the controller. Idempotent; never throws (errors are reported).
   */
  close(): Promise<FleetStopReport>;
}

const DEFAULT_CONCURRENCY = 4;
const message = (e: unknown): string => (e instanceof Error ? e.message : String(e));

async function stopAll(
  controller: LocalController,
  workers: readonly LocalWorker[],
  progress: (line: string) => void,
): Promise<FleetStopReport> {
  const errors: string[] = [];
  await Promise.all(workers.map((w) => w.stopDaemons()));
  progress(`stopped the daemons of ${workers.length} worker${workers.length === 1 ? '' : 's'}`);
  const stopped = await Promise.all(
    workers.map(async (w) => {
      try {
        return (await w.stopServices()).length;
      } catch (e: unknown) {
        errors.push(message(e));
        return 0;
      }
    }),
  );
  const servicesStopped = stopped.reduce((a, b) => a + b, 0);
  progress(`stopped ${servicesStopped} service processes`);
  await controller.daemon.stop();
  progress('stopped the controller');
  return { servicesStopped, errors };
}

/**
 * Starts `controller init` + `controller serve`, then enrolls each worker through the CLI and
 * starts its agent, updater and forwarder, and waits until every worker is online. On failure
 * everything started so far is stopped before the error is thrown.
 */
export async function startLocalFleet(o: LocalFleetOptions): Promise<LocalFleet> {
  const progress = o.progress ?? (() => undefined);
  const controllerDir = join(o.dir, 'controller');
  await mkdir(controllerDir, { recursive: true, mode: 0o700 });
  const controller = await startLocalController({
    cli: o.cli,
    stateDir: controllerDir,
    logFile: join(o.dir, 'controller.log'),
    heartbeatIntervalMs: o.heartbeatIntervalMs,
    ...(o.controllerAddress !== undefined ? { address: o.controllerAddress } : {}),
    ...(o.workerListenHost !== undefined ? { workerListenHost: o.workerListenHost } : {}),
    ...(o.startTimeoutMs !== undefined ? { startTimeoutMs: o.startTimeoutMs } : {}),
    ...(o.serveArgs !== undefined ? { serveArgs: o.serveArgs } : {}),
    ...(o.initArgs !== undefined ? { initArgs: o.initArgs } : {}),
  });
  const e = controller.endpoints;
  const syslog = (o.forwarder ?? true) && e.syslog !== undefined;
  progress(
    `controller listening: admin ${e.admin ?? '?'}, workers ${e.worker ?? '?'}, syslog ${e.syslog ?? 'none'}`,
  );
  const workers: LocalWorker[] = [];
  let releaseFrom: string | undefined;
  if (o.install) {
    const running = runningRelease();
    const version = running.version ?? running.packageVersion;
    const zero = await installReleaseZero({
      root: running.root,
      prefix: join(o.dir, 'release-0'),
      version,
      createdBy: 'corral up',
    });
    releaseFrom = zero.layout.releaseDir(version);
    progress(`release ${version} installed once for every worker (${releaseFrom})`);
  }
  try {
    const queue = [...o.workers];
    const failures: unknown[] = [];
    await Promise.all(
      Array.from({ length: Math.min(queue.length, o.concurrency ?? DEFAULT_CONCURRENCY) }, async () => {
        for (let plan = queue.shift(); plan && failures.length === 0; plan = queue.shift()) {
          if (o.signal?.aborted) {
            failures.push(new CorralError(ErrorCode.CLOSED, 'stopped while starting'));
            break;
          }
          try {
            const options = {
              cli: o.cli,
              controller,
              stateDir: join(o.dir, plan.name),
              heartbeatIntervalMs: o.heartbeatIntervalMs,
              updater: o.updater ?? true,
              forwarder: syslog,
              ...(o.startTimeoutMs !== undefined ? { startTimeoutMs: o.startTimeoutMs } : {}),
            };
            const worker =
              releaseFrom !== undefined
                ? await installLocalWorker({ ...options, releaseFrom }, plan)
                : await startLocalWorker(options, plan);
            workers.push(worker);
            const daemons =
              releaseFrom !== undefined
                ? ['updater (running the agent and the forwarder)']
                : ['agent', worker.updater && 'updater', worker.forwarder && 'forwarder'];
            progress(
              `${plan.name} enrolled; ${daemons.filter(Boolean).join(', ')} running (agent ${plan.address}:${worker.agentPort})`,
            );
          } catch (err: unknown) {
            failures.push(err);
          }
        }
      }),
    );
    if (failures.length > 0) throw failures[0];
    await controller.waitForHosts(
      o.workers.map((w) => w.name),
      ['online'],
      o.startTimeoutMs,
    );
    progress(`${workers.length} worker${workers.length === 1 ? '' : 's'} online`);
  } catch (err: unknown) {
    await stopAll(controller, workers, () => undefined);
    throw err;
  }
  workers.sort(
    (a, b) => o.workers.findIndex((w) => w.name === a.name) - o.workers.findIndex((w) => w.name === b.name),
  );
  let closing: Promise<FleetStopReport> | undefined;
  const close = (): Promise<FleetStopReport> => (closing ??= stopAll(controller, workers, progress));
  return {
    dir: o.dir,
    controller,
    workers,
    syslog,
    worker(name) {
      const w = workers.find((x) => x.name === name);
      if (!w) throw new CorralError(ErrorCode.NOT_FOUND, `no worker named ${name}`);
      return w;
    },
    close,
    async [Symbol.asyncDispose]() {
      await close();
    },
  };
}

import { randomUUID } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import type { Logger } from 'pino';
import type { SelfDestructAccepted, SelfDestructRequest } from '../../protocol/agent-api.js';
import { CorralError, ErrorCode } from '../../protocol/errors.js';
import { writeJsonAtomic } from '../../kit/json-file.js';
import { findCorralDaemons } from './corral-daemons.js';
import { livePidFile } from '../../kit/pid-file.js';
import { isSameProcess, type ProcessIdentity } from '../../kit/proc.js';
import { launchReaper, type SystemdMode } from './reaper-launch.js';
import {
  buildCheckedReaperPlan,
  type ReaperPlan,
  type ReaperReportTarget,
  type SelfDestructConfig,
} from './self-destruct-plan.js';
import type { ServiceDirs } from '../supervise/service-record.js';
import type { Runtimes } from '../runtime/runtime.js';
import { createRuntimes } from '../runtime/runtimes.js';
import { engineSocket } from '../runtime/docker-engine.js';
import { agentInstance } from '../runtime/orphans.js';

/** Gives the agent's reply time to leave before the reaper stops the agent, in ms. */
const REAPER_START_DELAY_MS = 300;

export interface SelfDestructDeps {
  readonly config: SelfDestructConfig;
  readonly hostId: string;
  readonly hostname: string;
  /** argv that runs the reaper; the plan file path is appended. Absent: self-destruct is refused. */
  readonly reaperCommand: readonly string[] | undefined;
  readonly systemd: SystemdMode;
  readonly agent: ProcessIdentity;
  readonly defaultStopGraceMs: number;
  readonly log: Logger;
  services(): ReaperPlan['services'];
  /** Asked for the containers labelled with `instance` that no service record names. */
  readonly runtimes: Runtimes;
  readonly instance: string;
  /** Where the reaper reports when it has finished (the controller, with this agent's identity). */
  reportTarget(): ReaperReportTarget | null;
  /** Refuse every change from now on. */
  freeze(): void;
  now(): number;
}

/**
 * Handles POST /v1/self-destruct (and the agent's own decision when the controller says this
 * host is decommissioned): checks, freezes the agent, writes the plan, starts the reaper.
 */
export function createSelfDestruct(deps: SelfDestructDeps) {
  /** The self-destruct under way: asked again (the controller, then a heartbeat's 410), it is the same one. */
  let underWay: SelfDestructAccepted | undefined;
  return {
    async prepare(
      req: SelfDestructRequest,
    ): Promise<{ accepted: SelfDestructAccepted; launch: () => Promise<void> }> {
      if (req.hostId !== undefined && req.hostId !== deps.hostId) {
        throw new CorralError(ErrorCode.CONFLICT, `this worker is ${deps.hostId}, not ${req.hostId}`);
      }
      if (underWay) return { accepted: underWay, launch: async () => undefined };
      const command = deps.reaperCommand;
      if (!command || command.length === 0) {
        throw new CorralError(ErrorCode.UNAVAILABLE, 'this agent has no reaper configured');
      }
      const plan = await buildCheckedReaperPlan(
        deps.config,
        deps.hostname,
        { ...deps.agent, pgid: deps.agent.pid },
        await withOwnedContainers(deps.services(), deps.runtimes, deps.instance, deps.defaultStopGraceMs),
        REAPER_START_DELAY_MS,
        await findCorralDaemons(deps.config.stateDir),
        deps.reportTarget(),
      );
      deps.freeze();
      const planPath = join(tmpdir(), `corral-reaper-${randomUUID()}.json`);
      await writeJsonAtomic(planPath, plan, true);
      const operationId = randomUUID();
      deps.log.warn(
        {
          operationId,
          deleteDirs: plan.deleteDirs,
          services: plan.services.map(
            (s) =>
              `${s.name} (${s.ref.kind === 'process' ? `pid ${s.ref.pid}` : `container ${s.ref.id.slice(0, 12)}`})`,
          ),
          daemons: plan.daemons.map((d) => `${d.name} (pid ${d.process.pid})`),
        },
        'self-destruct accepted',
      );
      const accepted = { operationId, hostId: deps.hostId, startedAt: new Date(deps.now()).toISOString() };
      underWay = accepted;
      return {
        accepted,
        launch: async () => {
          const how = await launchReaper([...command, planPath], deps.systemd).catch((e: unknown) => {
            underWay = undefined; // no reaper runs: the next ask may try again
            throw e;
          });
          deps.log.warn({ operationId, how }, 'reaper started');
        },
      };
    },
  };
}

/** The plan a self-destruct would carry out now, read from disk (for `--dry-run`; no agent needed). */
export async function planFromDisk(
  stateDir: string,
  config: SelfDestructConfig,
  dirs: ServiceDirs,
  defaultStopGraceMs: number,
): Promise<ReaperPlan> {
  const holder = await livePidFile(stateDir, 'agent');
  const agent: ReaperPlan['agent'] = holder
    ? { pid: holder.pid, startTime: holder.startTime, bootId: holder.bootId, pgid: holder.pid }
    : null;
  const services: ReaperPlan['services'] = [];
  const processes = createRuntimes({ container: null });
  for (const name of await dirs.list()) {
    const rec = await dirs.load(name).catch(() => undefined /* unreadable: nothing to stop by record */);
    if (rec?.ref?.kind === 'process' && (await isSameProcess(rec.ref))) {
      services.push({ name, ref: rec.ref, stopGraceMs: rec.spec.stopGraceMs ?? defaultStopGraceMs });
    }
  }
  for (const r of processes.values()) r.close();
  // Containers are found by label, whatever the records say (the engine is the truth for them).
  let containers: SelfDestructConfig['containers'] = config.containers;
  if (containers === undefined) {
    try {
      containers = { socket: engineSocket(undefined), instance: agentInstance(resolve(stateDir)) };
    } catch {
      containers = null; // DOCKER_HOST names no Unix socket: no engine Corral would have used
    }
  }
  const runtimes = createRuntimes({ container: containers ? { socket: containers.socket } : null });
  try {
    const all = containers
      ? await withOwnedContainers(services, runtimes, containers.instance, defaultStopGraceMs)
      : services;
    return buildCheckedReaperPlan(
      { ...config, containers },
      '-',
      agent,
      all,
      0,
      await findCorralDaemons(stateDir),
    );
  } finally {
    for (const r of runtimes.values()) r.close();
  }
}

/**
 * `services` plus every container labelled with `instance` that none of them names: the
 * containers of records lost or never written. Each is listed in the plan (and its dry run).
 */
export async function withOwnedContainers(
  services: ReaperPlan['services'],
  runtimes: Runtimes,
  instance: string,
  stopGraceMs: number,
): Promise<ReaperPlan['services']> {
  const runtime = runtimes.get('container');
  if (!runtime) return services;
  const out = [...services];
  for (const w of await runtime.listOwned(instance)) {
    const ref = w.ref;
    if (ref.kind !== 'container') continue;
    if (out.some((s) => s.ref.kind === 'container' && s.ref.id === ref.id)) continue;
    out.push({ name: w.service, ref, stopGraceMs });
  }
  return out;
}

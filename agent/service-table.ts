import { join } from 'node:path';
import type { ServiceStatus } from '../protocol/heartbeat.js';
import { createLogCapture, type LogCapture } from './log-capture.js';
import { findServiceLeaders } from './orphans.js';
import { isSameProcess, type ProcessIdentity } from '../kit/proc.js';
import type { CurrentService, DesiredService } from './plan.js';
import type { ProcessRecord } from './runtime.js';
import { RECORD_FILE, type ServiceRecord } from './service-record.js';
import { damagedRecordError } from './state-check.js';
import {
  createSupervisor,
  restoreSupervisor,
  type ServiceSupervisor,
  type SupervisorDeps,
} from './service-supervisor.js';
import type { StateFiles } from './state-manifest.js';
import type { WorkerLog } from './worker-log.js';

/** Matches no resolved spec: a service labelled with it is replaced by the next reconcile. */
export const UNKNOWN_SPEC_HASH = '0'.repeat(64);

export interface ServiceTableDeps extends SupervisorDeps {
  readonly hostname: string;
  readonly workerLog: WorkerLog;
  readonly truncateLogsAboveBytes?: number;
  /** Told of each service's log offsets file (see state-manifest.ts). */
  readonly stateFiles?: StateFiles;
}

/** Every service this agent supervises, with its log capture. */
export interface ServiceTable {
  /** Rebuilds supervisors from `services/*` records, re-adopting live processes. */
  restore(): Promise<void>;
  current(): CurrentService[];
  statuses(): ServiceStatus[];
  names(): string[];
  /** Starts (or replaces) a service; resolves with the error when it could not start. */
  start(desired: DesiredService, generation: number): Promise<string | undefined>;
  /** Stops a service, ships its last output, and forgets it (its directory goes). */
  remove(name: string): Promise<void>;
  /** The process records of running services, for the self-destruct reaper. */
  processes(): { name: string; record: ProcessRecord; stopGraceMs: number | undefined }[];
  /** Copies new service output into the worker log; returns lines shipped. */
  pumpLogs(): Promise<number>;
  /** Stops watching every service, leaving them running. */
  detachAll(): Promise<void>;
}

export function createServiceTable(deps: ServiceTableDeps): ServiceTable {
  const sups = new Map<string, ServiceSupervisor>();
  const captures = new Map<string, LogCapture>();
  const log = deps.log;

  function track(sup: ServiceSupervisor): void {
    sups.set(sup.name, sup);
    captures.set(
      sup.name,
      createLogCapture({
        serviceDir: deps.dirs.dir(sup.name),
        service: sup.name,
        hostname: deps.hostname,
        workerLog: deps.workerLog,
        pid: () => sup.pid(),
        ...(deps.truncateLogsAboveBytes !== undefined && { truncateAboveBytes: deps.truncateLogsAboveBytes }),
        now: deps.now,
        ...(deps.stateFiles && { stateFiles: deps.stateFiles }),
      }),
    );
  }

  async function pumpOne(name: string): Promise<number> {
    const capture = captures.get(name);
    if (!capture) return 0;
    try {
      return await capture.pump();
    } catch (err: unknown) {
      log.warn({ err, service: name }, 'service output not shipped');
      return 0;
    }
  }

  /** Processes of ours no record explains (or second copies): stop them, never supervise twice. */
  async function stopStrays(strays: [string, ProcessIdentity[]][]): Promise<void> {
    for (const [name, ids] of strays) {
      for (const id of ids) {
        log.warn({ service: name, pid: id.pid }, 'stray service process; stopping it');
        const h = await deps.runtime.adopt({ ...id, pgid: id.pid });
        await deps.runtime
          .stop(h, deps.defaultStopGraceMs)
          .catch((err: unknown) => log.error({ err }, 'stray not stopped'));
        h.detach();
      }
    }
  }

  return {
    async restore() {
      const leaders = await findServiceLeaders(deps.instance);
      for (const name of await deps.dirs.list()) {
        let rec: ServiceRecord | undefined;
        try {
          rec = await deps.dirs.load(name);
        } catch (err: unknown) {
          // Never run on without it: its process would be left alone and a second one started.
          throw damagedRecordError(join(deps.dirs.dir(name), RECORD_FILE), err);
        }
        if (!rec || rec.spec.name !== name) continue;
        const found = leaders.get(name) ?? [];
        const recorded = rec.process;
        let keep =
          recorded && found.find((p) => p.pid === recorded.pid && p.startTime === recorded.startTime);
        if (!keep && found.length > 0 && !(recorded && (await isSameProcess(recorded)))) {
          // Spawned by an agent that died before recording it: adopt it rather than start another
          // (the one on the recorded spec, if there is one; the others are stopped below).
          const wanted = rec.specHash;
          keep = found.find((p) => p.specHash === wanted) ?? found[0];
          if (keep) {
            rec = {
              ...rec,
              process: { pid: keep.pid, startTime: keep.startTime, bootId: keep.bootId, pgid: keep.pid },
            };
            log.warn({ service: name, pid: keep.pid }, 'unrecorded service process found; adopting it');
          }
        }
        if (keep?.specHash !== undefined && keep.specHash !== rec.specHash) {
          // Its environment says it runs another spec than the record names: never take it
          // for the recorded one, so the startup reconcile replaces it.
          log.warn({ service: name, pid: keep.pid }, 'service process runs another spec than recorded');
          rec = { ...rec, specHash: UNKNOWN_SPEC_HASH };
        }
        leaders.set(
          name,
          found.filter((p) => p !== keep),
        );
        track(await restoreSupervisor(deps, rec));
      }
      await stopStrays([...leaders.entries()]);
    },

    current: () => [...sups.values()].map((s) => s.current()),
    statuses: () => [...sups.values()].map((s) => s.status()),
    names: () => [...sups.keys()],

    async start(desired, generation) {
      let sup = sups.get(desired.spec.name);
      if (!sup) {
        sup = createSupervisor(deps, {
          version: 1,
          spec: desired.spec,
          specHash: desired.specHash,
          generation,
          state: 'pending',
          process: null,
          restarts: 0,
          restartTimes: [],
          lastError: null,
          since: null,
        });
        track(sup);
      }
      return sup.start(desired, generation);
    },

    async remove(name) {
      const sup = sups.get(name);
      if (!sup) return;
      await sup.stop();
      await sup.flush();
      await pumpOne(name);
      await captures.get(name)?.close();
      sups.delete(name);
      captures.delete(name);
      await deps.dirs.remove(name);
      log.info({ service: name }, 'service removed');
    },

    processes() {
      const out: { name: string; record: ProcessRecord; stopGraceMs: number | undefined }[] = [];
      for (const sup of sups.values()) {
        const rec = sup.record();
        if (rec.process) out.push({ name: sup.name, record: rec.process, stopGraceMs: rec.spec.stopGraceMs });
      }
      return out;
    },

    async pumpLogs() {
      let shipped = 0;
      for (const name of [...captures.keys()]) shipped += await pumpOne(name);
      return shipped;
    },

    async detachAll() {
      for (const sup of sups.values()) sup.detach();
      await Promise.all([...sups.values()].map((s) => s.flush()));
    },
  };
}

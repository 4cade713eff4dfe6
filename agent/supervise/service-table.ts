import { join } from 'node:path';
import type { ServiceStatus } from '../../protocol/heartbeat.js';
import { createLogCapture, type LogCapture } from '../logs/log-capture.js';
import type { CurrentService, DesiredService } from '../reconcile/plan.js';
import { sameWorkload, type OwnedWorkload, type RuntimeRef } from '../runtime/runtime.js';
import { RECORD_FILE, type ServiceRecord } from './service-record.js';
import { damagedRecordError } from '../state/state-check.js';
import {
  createSupervisor,
  describeRef,
  restoreSupervisor,
  runtimeOf,
  type ServiceSupervisor,
  type SupervisorDeps,
} from './service-supervisor.js';
import type { StateFiles } from '../state/state-manifest.js';
import type { WorkerLog } from '../../kit/worker-log.js';
import { CorralError, ErrorCode } from '../../protocol/errors.js';

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
  /** Rebuilds supervisors from `services/*` records, re-adopting live workloads. */
  restore(): Promise<void>;
  current(): CurrentService[];
  statuses(): ServiceStatus[];
  names(): string[];
  /** Starts (or replaces) a service; resolves with the error when it could not start. */
  start(desired: DesiredService, generation: number): Promise<string | undefined>;
  /**
   * Stops a supervised service and starts it again on its spec; throws CORRAL_ERR_NOT_FOUND
   * when no service has that name. Resolves with the error when it could not start.
   */
  restart(name: string, reason: string): Promise<{ error: string | undefined; status: ServiceStatus }>;
  /** Stops a service, ships its last output, and forgets it (its directory goes). */
  remove(name: string): Promise<void>;
  /** The workloads of running services, for the self-destruct reaper. */
  workloads(): { name: string; ref: RuntimeRef; stopGraceMs: number | undefined }[];
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

  /** Workloads of ours no record explains (or second copies): stop them, never supervise twice. */
  async function stopStrays(strays: OwnedWorkload[]): Promise<void> {
    for (const stray of strays) {
      log.warn(
        { service: stray.service, ref: describeRef(stray.ref) },
        'stray service workload; stopping it',
      );
      await runtimeOf(deps, stray.ref.kind)
        .stop(stray.ref, deps.defaultStopGraceMs)
        .catch((err: unknown) => log.error({ err }, 'stray not stopped'));
    }
  }

  /** Every runtime's workloads labelled with this agent instance, by service. */
  async function listOwned(): Promise<Map<string, OwnedWorkload[]>> {
    const found = new Map<string, OwnedWorkload[]>();
    for (const runtime of deps.runtimes.values()) {
      for (const w of await runtime.listOwned(deps.instance)) {
        found.set(w.service, [...(found.get(w.service) ?? []), w]);
      }
    }
    return found;
  }

  return {
    async restore() {
      const owned = await listOwned();
      for (const name of await deps.dirs.list()) {
        let rec: ServiceRecord | undefined;
        try {
          rec = await deps.dirs.load(name);
        } catch (err: unknown) {
          // Never run on without it: its workload would be left alone and a second one started.
          throw damagedRecordError(join(deps.dirs.dir(name), RECORD_FILE), err);
        }
        if (!rec || rec.spec.name !== name) continue;
        const found = owned.get(name) ?? [];
        const recorded = rec.ref;
        let keep = recorded ? found.find((w) => sameWorkload(w.ref, recorded)) : undefined;
        if (
          !keep &&
          found.length > 0 &&
          !(recorded && (await runtimeOf(deps, recorded.kind).inspect(recorded)))
        ) {
          // Started by an agent that died before recording it: adopt it rather than start another
          // (the one on the recorded spec, if there is one; the others are stopped below).
          const wanted = rec.specHash;
          const live = found.filter((w) => w.running);
          keep = live.find((w) => w.specHash === wanted) ?? live[0];
          if (keep) {
            rec = { ...rec, ref: keep.ref };
            log.warn(
              { service: name, ref: describeRef(keep.ref) },
              'unrecorded service workload found; adopting it',
            );
          }
        }
        if (keep?.specHash !== undefined && keep.specHash !== rec.specHash) {
          // Its labels say it runs another spec than the record names: never take it for the
          // recorded one, so the startup reconcile replaces it.
          log.warn(
            { service: name, ref: describeRef(keep.ref) },
            'service workload runs another spec than recorded',
          );
          rec = { ...rec, specHash: UNKNOWN_SPEC_HASH };
        }
        owned.set(
          name,
          found.filter((w) => w !== keep),
        );
        track(await restoreSupervisor(deps, rec));
      }
      await stopStrays([...owned.values()].flat());
    },

    current: () => [...sups.values()].map((s) => s.current()),
    statuses: () => [...sups.values()].map((s) => s.status()),
    names: () => [...sups.keys()],

    async start(desired, generation) {
      let sup = sups.get(desired.spec.name);
      if (!sup) {
        sup = createSupervisor(deps, {
          version: 2,
          spec: desired.spec,
          specHash: desired.specHash,
          generation,
          state: 'pending',
          ref: null,
          restarts: 0,
          restartTimes: [],
          lastError: null,
          since: null,
        });
        track(sup);
      }
      return sup.start(desired, generation);
    },

    async restart(name, reason) {
      const sup = sups.get(name);
      if (!sup) throw new CorralError(ErrorCode.NOT_FOUND, `no service named ${name}`);
      const error = await sup.restart(reason);
      return { error, status: sup.status() };
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

    workloads() {
      const out: { name: string; ref: RuntimeRef; stopGraceMs: number | undefined }[] = [];
      for (const sup of sups.values()) {
        const rec = sup.record();
        if (rec.ref) out.push({ name: sup.name, ref: rec.ref, stopGraceMs: rec.spec.stopGraceMs });
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

import { spawn, type ChildProcess } from 'node:child_process';
import { open } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import {
  bootId,
  groupExists,
  groupMembers,
  identityOf,
  isSameProcess,
  readProcStat,
  signalGroup,
} from '../../kit/proc.js';
import { CorralError, ErrorCode } from '../../protocol/errors.js';
import type { ExitInfo } from '../supervise/restart-policy.js';
import type { ServiceSpec } from '../../protocol/service-spec.js';
import { findServiceLeaders } from './orphans.js';
import { checkProcessLimits, prepareLimits, removeCgroups, wrapCommand } from './process-limits.js';
import type { ProcessRef, RunHandle, Runtime, RuntimeRef, StartRequest } from './runtime.js';

export interface ProcessRuntimeOptions {
  /** How often adopted processes (not our children, so no exit event) are checked, in ms. */
  readonly adoptPollMs?: number;
  /** How long to wait for a group to vanish after SIGKILL, in ms. */
  readonly killWaitMs?: number;
  /** Directories a service's workingDir may lie in; none: no workingDir is accepted. */
  readonly allowedWorkingDirs?: readonly string[];
}

const STOP_POLL_MS = 25;

/**
 * Runs services as local processes. Each starts in its own session (`detached`), so its
 * process group id is its pid, signals to the agent never reach it, and it outlives the agent.
 * stdout and stderr go to append-only files (see log-capture.ts for why).
 */
export function createProcessRuntime(options: ProcessRuntimeOptions = {}): Runtime<'process'> {
  const adoptPollMs = options.adoptPollMs ?? 1000;
  const killWaitMs = options.killWaitMs ?? 5000;
  const watched = new Map<ProcessRef, (exit: ExitInfo) => void>();
  let timer: NodeJS.Timeout | undefined;
  let polling = false;

  async function pollAdopted(): Promise<void> {
    if (polling) return;
    polling = true;
    try {
      for (const [record, resolve] of [...watched]) {
        if (!(await isSameProcess(record))) {
          watched.delete(record);
          resolve({ known: false, code: null, signal: null });
        }
      }
    } finally {
      polling = false;
    }
  }

  function watch(record: ProcessRef, resolve: (exit: ExitInfo) => void): void {
    watched.set(record, resolve);
    timer ??= setInterval(() => void pollAdopted(), adoptPollMs).unref();
  }

  function unwatch(record: ProcessRef): void {
    watched.delete(record);
    if (watched.size === 0 && timer) {
      clearInterval(timer);
      timer = undefined;
    }
  }

  /** The group is still this service's: pid pgid is free (leader gone) or is still our leader. */
  async function groupIsOurs(record: ProcessRef): Promise<boolean> {
    if (record.bootId !== (await bootId())) return false;
    const leader = await readProcStat(record.pgid);
    return leader === undefined || leader.startTime === record.startTime;
  }

  async function groupGone(record: ProcessRef): Promise<boolean> {
    if (!groupExists(record.pgid)) return true;
    if (await isSameProcess(record)) return false;
    return (await groupMembers(record.pgid)).length === 0;
  }

  function asProcess(ref: RuntimeRef): ProcessRef {
    if (ref.kind !== 'process') throw new CorralError(ErrorCode.INTERNAL, `not a process: ${ref.kind}`);
    return ref;
  }

  function processSpec(spec: ServiceSpec): Extract<ServiceSpec, { runtime: 'process' }> {
    if (spec.runtime !== 'process')
      throw new CorralError(ErrorCode.INTERNAL, `not a process spec: ${spec.runtime}`);
    return spec;
  }

  async function adopt(ref: RuntimeRef): Promise<RunHandle> {
    const record = asProcess(ref);
    let resolveExit: (exit: ExitInfo) => void = () => undefined;
    const exited = new Promise<ExitInfo>((resolve) => {
      resolveExit = resolve;
    });
    if (await isSameProcess(record)) watch(record, resolveExit);
    else resolveExit({ known: false, code: null, signal: null });
    return { ref: record, pid: record.pid, exited, detach: () => unwatch(record) };
  }

  return {
    kind: 'process',

    check(spec, where) {
      checkProcessLimits(processSpec(spec), where, {
        ...(options.allowedWorkingDirs && { allowedWorkingDirs: options.allowedWorkingDirs }),
      });
    },

    async start(request: StartRequest): Promise<RunHandle> {
      const spec = processSpec(request.spec);
      const limits = await prepareLimits(spec, `${request.labels.instance.slice(0, 12)}-${spec.name}`);
      const [command, args] = wrapCommand(spec.command, spec.args, limits);
      const out = await open(request.stdoutPath, 'a', 0o640);
      const err = await open(request.stderrPath, 'a', 0o640).catch(async (e: unknown) => {
        await out.close();
        throw e;
      });
      let child: ChildProcess;
      let exited: Promise<ExitInfo>;
      try {
        child = spawn(command, args, {
          cwd: request.cwd,
          ...(limits.uid !== undefined && { uid: limits.uid }),
          ...(limits.gid !== undefined && { gid: limits.gid }),
          env: { ...request.env },
          detached: true,
          stdio: ['ignore', out.fd, err.fd],
        });
        // Listen at once: a short-lived process can exit before the awaits below finish.
        const spawned = child;
        exited = new Promise<ExitInfo>((resolve) => {
          spawned.once('exit', (code, signal) => resolve({ known: true, code, signal }));
        });
        await new Promise<void>((resolve, reject) => {
          spawned.once('spawn', resolve);
          spawned.once('error', reject);
        });
      } finally {
        await out.close();
        await err.close();
      }
      child.unref();
      // The service's cgroups go once it has exited (a cgroup still holding a process of its
      // group stays: rmdir refuses it, and the next start of the service reuses it by name).
      void exited.then(() => removeCgroups(limits.cgroupProcs ?? []));
      const pid = child.pid;
      if (pid === undefined) throw new CorralError(ErrorCode.PROCESS_FAILED, 'spawned process has no pid');
      const identity = (await identityOf(pid)) ?? { pid, startTime: 'exited', bootId: await bootId() };
      return {
        ref: { kind: 'process', ...identity, pgid: pid },
        pid,
        exited,
        detach() {
          child.removeAllListeners('exit');
        },
      };
    },

    adopt,

    inspect: (ref) => isSameProcess(asProcess(ref)),

    async stop(ref: RuntimeRef, graceMs: number): Promise<void> {
      const record = asProcess(ref);
      if (!(await groupIsOurs(record))) return;
      if (!signalGroup(record.pgid, 'SIGTERM')) return;
      const termDeadline = Date.now() + graceMs;
      while (Date.now() < termDeadline) {
        if (await groupGone(record)) return;
        await sleep(STOP_POLL_MS);
      }
      if (!(await groupIsOurs(record))) return;
      signalGroup(record.pgid, 'SIGKILL');
      const killDeadline = Date.now() + killWaitMs;
      while (Date.now() < killDeadline) {
        if (await groupGone(record)) return;
        await sleep(STOP_POLL_MS);
      }
      throw new CorralError(ErrorCode.PROCESS_FAILED, `process group ${record.pgid} survived SIGKILL`);
    },

    async listOwned(instance) {
      const out = [];
      for (const [service, leaders] of await findServiceLeaders(instance)) {
        for (const l of leaders) {
          const ref: ProcessRef = {
            kind: 'process',
            pid: l.pid,
            startTime: l.startTime,
            bootId: l.bootId,
            pgid: l.pid,
          };
          out.push({ service, ref, specHash: l.specHash, running: true });
        }
      }
      return out;
    },

    logs() {
      // The process writes its stdout and stderr files itself: they are its descriptors.
    },

    close() {
      if (timer) clearInterval(timer);
      timer = undefined;
      watched.clear();
    },
  };
}

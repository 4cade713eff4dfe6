import { execFile } from 'node:child_process';
import { appendFile, lstat, readdir, readFile, realpath, rm, rmdir } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';
import { createRuntimes } from '../runtime/runtimes.js';
import type { OwnedWorkload, RuntimeRef, Runtimes } from '../runtime/runtime.js';
import { isSameProcess, signalProcess, type ProcessIdentity } from '../../kit/proc.js';
import { formatSyslogLine } from '../../kit/rfc5424.js';
import { CorralError, ErrorCode } from '../../protocol/errors.js';
import { checkDeletable, checkDirectoryOnDisk, isWithin, type ReaperPlan } from './self-destruct-plan.js';
import { sendWipeReport } from './wipe-reporter.js';

const execFileAsync = promisify(execFile);
/** SIGTERM to SIGKILL for the agent, the updater and the forwarder, in ms. */
const AGENT_STOP_GRACE_MS = 10_000;
const MAX_REPORTED_ERRORS = 32;
const MAX_REPORTED_ERROR_CHARS = 2048;
const PARALLEL_STOPS = 16;

export interface ReaperReport {
  readonly stoppedServices: string[];
  readonly stoppedUnits: string[];
  /** The updater and forwarder processes that were stopped (`updater (pid N)`). */
  readonly stoppedDaemons: string[];
  agentStopped: boolean;
  readonly deleted: string[];
  readonly kept: string[];
  readonly errors: string[];
  /** What the controller said to the wipe report; null when there was nobody to tell. */
  reported: string | null;
}

async function isSystemdInit(): Promise<boolean> {
  try {
    return (await readFile('/proc/1/comm', 'utf8')).trim() === 'systemd';
  } catch {
    return false; // ENOENT or EACCES: no /proc/1 we can read, so not systemd as far as we can tell
  }
}

/**
 * Stops one daemon process named by its identity: SIGTERM, then SIGKILL after the grace. The
 * identity (pid, start time, boot) is checked right before each signal, so a process that
 * exited and whose pid was reused is never signalled. False when it was not running.
 */
async function stopProcess(id: ProcessIdentity): Promise<boolean> {
  if (!(await isSameProcess(id))) return false;
  signalProcess(id.pid, 'SIGTERM');
  const deadline = Date.now() + AGENT_STOP_GRACE_MS;
  while (Date.now() < deadline) {
    if (!(await isSameProcess(id))) return true;
    await sleep(50);
  }
  if (await isSameProcess(id)) signalProcess(id.pid, 'SIGKILL');
  return true;
}

/**
 * Deletes `dir` except the kept directories (and the path down to them). `dir` itself must
 * still be a directory (lstat, as at plan time): a symbolic link put there since is refused
 * and nothing is deleted. Links inside are removed, never followed; nothing outside `dir` is
 * touched.
 */
async function deleteExcept(dir: string, keep: readonly string[], report: ReaperReport): Promise<void> {
  if ((await checkDirectoryOnDisk(dir)) === 'missing') return;
  let real: string;
  try {
    real = await realpath(dir);
  } catch (e: unknown) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw e;
  }
  checkDeletable(real);
  const keepReal = await Promise.all(keep.map((k) => realpath(k).catch(() => k /* ENOENT: keep as given */)));
  async function walk(path: string): Promise<boolean> {
    if (keepReal.some((k) => isWithin(path, k))) {
      report.kept.push(path);
      return false;
    }
    if (!keepReal.some((k) => isWithin(k, path))) {
      await rm(path, { recursive: true, force: true });
      report.deleted.push(path);
      return true;
    }
    // `path` holds a kept directory: delete around it.
    let emptied = true;
    for (const entry of await readdir(path)) {
      const child = join(path, entry);
      const st = await lstat(child);
      if (st.isDirectory()) emptied = (await walk(child)) && emptied;
      else {
        await rm(child, { force: true });
        report.deleted.push(child);
      }
    }
    if (emptied) await rmdir(path);
    return emptied;
  }
  await walk(real);
}

/**
 * Carries out a self-destruct: stops the Corral units and the agent (so nothing restarts what
 * follows), every service's process group, then deletes the planned directories, keeping logs.
 * Runs in its own session (or systemd unit), so it outlives the agent. Never throws; what
 * failed is in `errors`.
 */
export async function runReaper(
  plan: ReaperPlan,
  runtimes: Runtimes = createRuntimes({ container: plan.containers && { socket: plan.containers.socket } }),
): Promise<ReaperReport> {
  const report: ReaperReport = {
    stoppedServices: [],
    stoppedUnits: [],
    stoppedDaemons: [],
    agentStopped: false,
    deleted: [],
    kept: [],
    errors: [],
    reported: null,
  };
  const fail = (what: string, e: unknown): void => {
    report.errors.push(`${what}: ${e instanceof Error ? e.message : String(e)}`);
  };
  await sleep(plan.startDelayMs);
  if (plan.units.length > 0 && (await isSystemdInit())) {
    for (const unit of plan.units) {
      try {
        await execFileAsync('systemctl', ['disable', '--now', unit], { timeout: 60_000 });
        report.stoppedUnits.push(unit);
      } catch (e: unknown) {
        fail(`unit ${unit}`, e);
      }
    }
  }
  // The updater first: it would start the agent again. Then the forwarder, then the agent.
  const stoppedNames: string[] = [];
  const daemons = [...plan.daemons].sort(
    (a, b) => Number(a.name !== 'updater') - Number(b.name !== 'updater'),
  );
  for (const d of daemons) {
    try {
      if (await stopProcess(d.process)) {
        report.stoppedDaemons.push(`${d.name} (pid ${d.process.pid})`);
        stoppedNames.push(d.name);
      }
    } catch (e: unknown) {
      fail(`${d.name} (pid ${d.process.pid})`, e);
    }
  }
  if (plan.agent) {
    try {
      report.agentStopped = await stopProcess(plan.agent);
    } catch (e: unknown) {
      fail('agent', e);
    }
  }
  const queue: { name: string; ref: RuntimeRef; stopGraceMs: number }[] = [...plan.services];
  // Containers of this instance no record named (an agent that died before recording one).
  if (plan.containers) {
    const containers = runtimes.get('container');
    const listed: OwnedWorkload[] = containers
      ? await containers.listOwned(plan.containers.instance).catch((e: unknown) => {
          fail('listing containers', e);
          return [];
        })
      : [];
    for (const w of listed) {
      if (
        !queue.some((q) => q.ref.kind === 'container' && w.ref.kind === 'container' && q.ref.id === w.ref.id)
      ) {
        queue.push({ name: w.service, ref: w.ref, stopGraceMs: AGENT_STOP_GRACE_MS });
      }
    }
  }
  await Promise.all(
    Array.from({ length: PARALLEL_STOPS }, async () => {
      for (let s = queue.shift(); s; s = queue.shift()) {
        try {
          const runtime = runtimes.get(s.ref.kind);
          if (!runtime)
            throw new CorralError(ErrorCode.UNAVAILABLE, `no ${s.ref.kind} runtime to stop it with`);
          await runtime.stop(s.ref, s.stopGraceMs);
          report.stoppedServices.push(s.name);
        } catch (e: unknown) {
          fail(`service ${s.name}`, e);
        }
      }
    }),
  );
  for (const runtime of runtimes.values()) runtime.close();
  for (const dir of plan.deleteDirs) {
    try {
      await deleteExcept(dir, plan.keepDirs, report);
    } catch (e: unknown) {
      fail(`delete ${dir}`, e);
    }
  }
  if (plan.logFile && plan.keepDirs.some((k) => isWithin(plan.logFile ?? '', k))) {
    const line = formatSyslogLine({
      time: new Date(),
      hostname: plan.hostname,
      appName: 'corral-reaper',
      procId: process.pid,
      msgId: 'self-destruct',
      severity: report.errors.length > 0 ? 'warning' : 'notice',
      message: `self-destruct finished: ${report.stoppedDaemons.length} daemons and ${report.stoppedServices.length} services stopped, ${report.deleted.length} paths deleted, ${report.errors.length} errors${report.errors.length ? `: ${report.errors.join('; ')}` : ''}`,
    });
    await appendFile(plan.logFile, `${line}\n`).catch((e: unknown) => fail('final log line', e));
  }
  if (plan.report) {
    report.reported = await sendWipeReport(plan.report, {
      hostId: plan.report.hostId,
      stoppedServices: report.stoppedServices.length,
      stoppedDaemons: [...new Set([...stoppedNames, ...(report.agentStopped ? ['agent'] : [])])],
      stoppedUnits: report.stoppedUnits,
      deletedPaths: report.deleted.length,
      keptPaths: plan.keepDirs.slice(0, 16),
      errors: report.errors.slice(0, MAX_REPORTED_ERRORS).map((e) => e.slice(0, MAX_REPORTED_ERROR_CHARS)),
      finishedAt: new Date().toISOString(),
    });
  }
  return report;
}

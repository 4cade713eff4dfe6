import { accessSync, constants, existsSync, readFileSync } from 'node:fs';
import { chown, mkdir, readFile, writeFile } from 'node:fs/promises';
import { join, normalize } from 'node:path';
import { CorralError, ErrorCode } from '../../protocol/errors.js';
import type { ProcessServiceSpec } from '../../protocol/service-spec.js';
import { memoryBytes } from './container-runtime.js';
import { isWithin } from '../self-destruct/self-destruct-plan.js';

/** The cgroup v2 hierarchy limits are enforced through. */
export const CGROUP_ROOT = '/sys/fs/cgroup';
const CPU_PERIOD_US = 100_000;

/**
 * Why memory and CPU limits cannot be enforced on this host, or undefined when they can: a
 * cgroup v2 hierarchy at /sys/fs/cgroup, with the memory and cpu controllers, writable by us.
 */
export function cgroupProblem(root = CGROUP_ROOT): string | undefined {
  const controllers = join(root, 'cgroup.controllers');
  if (!existsSync(controllers)) {
    return `${root} is not a cgroup v2 hierarchy (no cgroup.controllers; cgroup v1 or none), so memory and cpus limits cannot be enforced`;
  }
  const have = readFileSync(controllers, 'utf8').trim().split(/\s+/);
  for (const c of ['memory', 'cpu']) {
    if (!have.includes(c)) return `the cgroup v2 hierarchy at ${root} has no ${c} controller`;
  }
  try {
    accessSync(root, constants.W_OK);
    accessSync(join(root, 'cgroup.subtree_control'), constants.W_OK);
  } catch {
    return `the cgroup v2 hierarchy at ${root} is not writable by this agent (read-only, or not root)`;
  }
  return undefined;
}

export interface ProcessLimitsOptions {
  /** Directories a service's workingDir may lie in (each, and beneath it). */
  readonly allowedWorkingDirs?: readonly string[];
}

/** Refuses, at apply, limits this agent cannot apply (see Runtime.check). */
export function checkProcessLimits(spec: ProcessServiceSpec, where: string, o: ProcessLimitsOptions): void {
  const refuse = (field: string, why: string): CorralError =>
    new CorralError(ErrorCode.VALIDATION, `${where}/${field}: ${why}`);
  const uid = process.getuid?.();
  for (const field of ['user', 'group'] as const) {
    if (spec[field] !== undefined && uid !== 0) {
      throw refuse(
        field,
        `the agent runs as uid ${uid ?? '?'}, not root, so it cannot start a service as another ${field}`,
      );
    }
  }
  for (const field of ['memory', 'cpus'] as const) {
    if (spec[field] === undefined) continue;
    const problem = cgroupProblem();
    if (problem) throw refuse(field, problem);
  }
  if (spec.memory !== undefined) memoryBytes(spec.memory);
  if (spec.workingDir !== undefined) {
    const dir = normalize(spec.workingDir);
    const allowed = o.allowedWorkingDirs ?? [];
    if (!dir.startsWith('/') || !allowed.some((a) => isWithin(dir, normalize(a)))) {
      throw refuse(
        'workingDir',
        `${spec.workingDir} is outside the directories this agent allows for working dirs (${allowed.length ? allowed.join(', ') : 'none configured'})`,
      );
    }
  }
}

/** A name or number from /etc/passwd or /etc/group: [id, primary gid (passwd only)]. */
async function lookup(file: string, name: string): Promise<[number, number | undefined]> {
  const text = await readFile(file, 'utf8');
  for (const line of text.split('\n')) {
    const cols = line.split(':');
    if (cols.length < 3) continue;
    if (cols[0] === name || cols[2] === name) {
      return [Number(cols[2]), file.endsWith('passwd') ? Number(cols[3]) : undefined];
    }
  }
  if (/^\d+$/.test(name)) return [Number(name), undefined];
  throw new CorralError(
    ErrorCode.VALIDATION,
    `no ${file.endsWith('passwd') ? 'user' : 'group'} ${name} on this host`,
  );
}

export interface SpawnLimits {
  readonly uid?: number;
  readonly gid?: number;
  /** `cgroup.procs` of the service's cgroup, which the process joins before it execs. */
  readonly cgroupProcs?: string;
  readonly umask?: string;
}

/**
 * Prepares what `spec` asks for: the ids to spawn as, and the service's cgroup with its
 * memory.max and cpu.max written (`<root>/corral-<token>`, the controllers enabled below the root).
 */
export async function prepareLimits(spec: ProcessServiceSpec, token: string): Promise<SpawnLimits> {
  let uid: number | undefined;
  let gid: number | undefined;
  if (spec.user !== undefined) [uid, gid] = await lookup('/etc/passwd', spec.user);
  if (spec.group !== undefined) [gid] = await lookup('/etc/group', spec.group);
  let cgroupProcs: string | undefined;
  if (spec.memory !== undefined || spec.cpus !== undefined) {
    const problem = cgroupProblem();
    if (problem) throw new CorralError(ErrorCode.PROCESS_FAILED, problem);
    await writeFile(join(CGROUP_ROOT, 'cgroup.subtree_control'), '+memory +cpu');
    const dir = join(CGROUP_ROOT, `corral-${token}`);
    await mkdir(dir, { recursive: true });
    await writeFile(
      join(dir, 'memory.max'),
      spec.memory === undefined ? 'max' : String(memoryBytes(spec.memory)),
    );
    await writeFile(
      join(dir, 'cpu.max'),
      spec.cpus === undefined
        ? `max ${CPU_PERIOD_US}`
        : `${Math.max(1000, Math.round(spec.cpus * CPU_PERIOD_US))} ${CPU_PERIOD_US}`,
    );
    cgroupProcs = join(dir, 'cgroup.procs');
    if (uid !== undefined) await chown(cgroupProcs, uid, gid ?? -1);
  }
  return {
    ...(uid !== undefined && { uid }),
    ...(gid !== undefined && { gid }),
    ...(cgroupProcs !== undefined && { cgroupProcs }),
    ...(spec.umask !== undefined && { umask: spec.umask }),
  };
}

/**
 * argv that applies the umask and joins the cgroup, then execs the command in the same process
 * (pid, start time and environment marker stay the service's); the command alone when neither.
 */
export function wrapCommand(command: string, args: readonly string[], l: SpawnLimits): [string, string[]] {
  if (l.umask === undefined && l.cgroupProcs === undefined) return [command, [...args]];
  const steps = [
    ...(l.umask !== undefined ? [`umask ${l.umask}`] : []),
    ...(l.cgroupProcs !== undefined ? ['echo $$ > "$1"'] : []),
    'shift',
    'exec "$@"',
  ];
  return ['/bin/sh', ['-c', steps.join(' && '), 'corral-limits', l.cgroupProcs ?? '-', command, ...args]];
}

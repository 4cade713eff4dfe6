import { accessSync, constants, existsSync, readFileSync } from 'node:fs';
import { chown, mkdir, readFile, rmdir, writeFile } from 'node:fs/promises';
import { dirname, join, normalize } from 'node:path';
import { CorralError, ErrorCode } from '../../protocol/errors.js';
import type { ProcessServiceSpec } from '../../protocol/service-spec.js';
import { memoryBytes } from './container-runtime.js';
import { isWithin } from '../self-destruct/self-destruct-plan.js';

/** Where cgroup hierarchies are mounted: v2 at the root, or v1 one per controller below it. */
export const CGROUP_ROOT = '/sys/fs/cgroup';
const CPU_PERIOD_US = 100_000;

/**
 * Where this agent creates its services' cgroups: a cgroup v2 hierarchy at the root, or the
 * cgroup v1 memory and cpu hierarchies, beneath the agent's own cgroup in each (so services
 * stay inside whatever limits the agent itself runs under).
 */
export type CgroupLayout =
  | { readonly kind: 'v2'; readonly dir: string }
  | { readonly kind: 'v1'; readonly memory: string; readonly cpu: string };

/** The agent's own cgroup in the v1 hierarchy of `controller` (from /proc/self/cgroup). */
function ownV1Path(controller: string): string | undefined {
  let text: string;
  try {
    text = readFileSync('/proc/self/cgroup', 'utf8');
  } catch {
    return undefined; // ENOENT: no /proc here, so no cgroups to place services in
  }
  for (const line of text.split('\n')) {
    const [, controllers, path] = line.split(':');
    if (controllers?.split(',').includes(controller) && path !== undefined) return path;
  }
  return undefined;
}

function writable(...paths: string[]): boolean {
  try {
    for (const p of paths) accessSync(p, constants.W_OK);
    return true;
  } catch {
    return false; // EACCES or EROFS: read-only, or not ours to change
  }
}

/** The agent's cgroup in the v1 hierarchy of `controller`, or why there is none to use. */
function v1Dir(
  root: string,
  controller: 'memory' | 'cpu',
  probe: string,
): { dir: string } | { problem: string } {
  const mounts = controller === 'cpu' ? ['cpu', 'cpu,cpuacct', 'cpuacct,cpu'] : ['memory'];
  const mount = mounts.map((m) => join(root, m)).find((m) => existsSync(join(m, probe)));
  if (mount === undefined) {
    return {
      problem: `${root} is neither a cgroup v2 hierarchy (no cgroup.controllers) nor has a cgroup v1 ${controller} controller, so memory and cpus limits cannot be enforced`,
    };
  }
  const dir = join(mount, ownV1Path(controller) ?? '/');
  if (!existsSync(dir) || !writable(dir)) {
    return {
      problem: `the agent's cgroup v1 ${controller} cgroup ${dir} is not writable by this agent (read-only, or not root)`,
    };
  }
  return { dir };
}

/** The layout limits are enforced through, or the reason they cannot be. */
export function cgroupLayout(root = CGROUP_ROOT): { layout: CgroupLayout } | { problem: string } {
  const controllers = join(root, 'cgroup.controllers');
  if (existsSync(controllers)) {
    const have = readFileSync(controllers, 'utf8').trim().split(/\s+/);
    for (const c of ['memory', 'cpu']) {
      if (!have.includes(c)) return { problem: `the cgroup v2 hierarchy at ${root} has no ${c} controller` };
    }
    if (!writable(root, join(root, 'cgroup.subtree_control'))) {
      return {
        problem: `the cgroup v2 hierarchy at ${root} is not writable by this agent (read-only, or not root)`,
      };
    }
    return { layout: { kind: 'v2', dir: root } };
  }
  const memory = v1Dir(root, 'memory', 'memory.limit_in_bytes');
  if ('problem' in memory) return memory;
  const cpu = v1Dir(root, 'cpu', 'cpu.cfs_quota_us');
  if ('problem' in cpu) return cpu;
  return { layout: { kind: 'v1', memory: memory.dir, cpu: cpu.dir } };
}

/**
 * Why memory and CPU limits cannot be enforced on this host, or undefined when they can:
 * a writable cgroup v2 hierarchy with the memory and cpu controllers, or writable cgroup v1
 * memory and cpu hierarchies.
 */
export function cgroupProblem(root = CGROUP_ROOT): string | undefined {
  const found = cgroupLayout(root);
  return 'problem' in found ? found.problem : undefined;
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
  /** `cgroup.procs` of the service's cgroups (one per v1 hierarchy), joined before it execs. */
  readonly cgroupProcs?: readonly string[];
  readonly umask?: string;
}

/**
 * Prepares what `spec` asks for: the ids to spawn as, and the service's cgroup with its limits
 * written: on v2 `<root>/corral-<token>` with memory.max and cpu.max (the controllers enabled
 * below the root); on v1 `corral-<token>` beneath the agent's own memory cgroup
 * (memory.limit_in_bytes) and cpu cgroup (cpu.cfs_quota_us), only for the limits asked for.
 */
export async function prepareLimits(spec: ProcessServiceSpec, token: string): Promise<SpawnLimits> {
  let uid: number | undefined;
  let gid: number | undefined;
  if (spec.user !== undefined) [uid, gid] = await lookup('/etc/passwd', spec.user);
  if (spec.group !== undefined) [gid] = await lookup('/etc/group', spec.group);
  const cgroupProcs: string[] = [];
  if (spec.memory !== undefined || spec.cpus !== undefined) {
    const found = cgroupLayout();
    if ('problem' in found) throw new CorralError(ErrorCode.PROCESS_FAILED, found.problem);
    const quota = spec.cpus === undefined ? undefined : Math.max(1000, Math.round(spec.cpus * CPU_PERIOD_US));
    const layout = found.layout;
    if (layout.kind === 'v2') {
      await writeFile(join(layout.dir, 'cgroup.subtree_control'), '+memory +cpu');
      const dir = join(layout.dir, `corral-${token}`);
      await mkdir(dir, { recursive: true });
      await writeFile(
        join(dir, 'memory.max'),
        spec.memory === undefined ? 'max' : String(memoryBytes(spec.memory)),
      );
      await writeFile(join(dir, 'cpu.max'), `${quota ?? 'max'} ${CPU_PERIOD_US}`);
      cgroupProcs.push(join(dir, 'cgroup.procs'));
    } else {
      if (spec.memory !== undefined) {
        const dir = join(layout.memory, `corral-${token}`);
        await mkdir(dir, { recursive: true });
        await writeFile(join(dir, 'memory.limit_in_bytes'), String(memoryBytes(spec.memory)));
        cgroupProcs.push(join(dir, 'cgroup.procs'));
      }
      if (quota !== undefined) {
        const dir = join(layout.cpu, `corral-${token}`);
        await mkdir(dir, { recursive: true });
        await writeFile(join(dir, 'cpu.cfs_period_us'), String(CPU_PERIOD_US));
        await writeFile(join(dir, 'cpu.cfs_quota_us'), String(quota));
        cgroupProcs.push(join(dir, 'cgroup.procs'));
      }
    }
    if (uid !== undefined) for (const procs of cgroupProcs) await chown(procs, uid, gid ?? -1);
  }
  return {
    ...(uid !== undefined && { uid }),
    ...(gid !== undefined && { gid }),
    ...(cgroupProcs.length > 0 && { cgroupProcs }),
    ...(spec.umask !== undefined && { umask: spec.umask }),
  };
}

/**
 * argv that applies the umask and joins the cgroup, then execs the command in the same process
 * (pid, start time and environment marker stay the service's); the command alone when neither.
 */
export function wrapCommand(command: string, args: readonly string[], l: SpawnLimits): [string, string[]] {
  const procs = l.cgroupProcs ?? [];
  if (l.umask === undefined && procs.length === 0) return [command, [...args]];
  const steps = [
    ...(l.umask !== undefined ? [`umask ${l.umask}`] : []),
    // Each argument before `--` is a cgroup.procs file to join; a failed write stops the start.
    'while [ "$1" != -- ]; do echo $$ > "$1" || exit 125; shift; done',
    'shift',
    'exec "$@"',
  ];
  return ['/bin/sh', ['-c', steps.join(' && '), 'corral-limits', ...procs, '--', command, ...args]];
}

/**
 * Removes a service's cgroups (the dirs of these `cgroup.procs` files) once its process has
 * exited. Never throws: a cgroup that still holds a process (EBUSY) or is gone already stays
 * as it is.
 */
export async function removeCgroups(cgroupProcs: readonly string[]): Promise<void> {
  for (const procs of cgroupProcs) {
    await rmdir(dirname(procs)).catch((e: unknown) => {
      // EBUSY: a process of the group is still in it; ENOENT: removed already.
      void e;
    });
  }
}

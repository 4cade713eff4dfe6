import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm, rmdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import type { ProcessServiceSpec } from '../../protocol/service-spec.js';
import { cgroupLayout } from './process-limits.js';
import { createProcessRuntime } from './process-runtime.js';
import type { RunHandle } from './runtime.js';

const runtime = createProcessRuntime({ adoptPollMs: 50 });
const started: RunHandle[] = [];
let dir = '';
/** Cgroups the runtime made for this file's services, removed once they are empty. */
const cgroups: string[] = [];
afterAll(async () => {
  for (const h of started) await runtime.stop(h.ref, 500);
  runtime.close();
  for (const cg of cgroups) await rmdir(cg).catch(() => undefined /* ENOENT or EBUSY: left for the host */);
  if (dir) await rm(dir, { recursive: true, force: true });
});

const spec = (extra: Partial<ProcessServiceSpec>): ProcessServiceSpec => ({
  name: 'limited',
  runtime: 'process',
  command: '/bin/sleep',
  args: ['300'],
  env: {},
  restart: 'never',
  ...extra,
});

async function start(s: ProcessServiceSpec): Promise<number> {
  dir ||= await mkdtemp(join(tmpdir(), 'corral-limits-'));
  const h = await runtime.start({
    spec: s,
    cwd: dir,
    env: { PATH: '/usr/bin:/bin' },
    stdoutPath: join(dir, 'out'),
    stderrPath: join(dir, 'err'),
    serviceDir: dir,
    labels: { service: s.name, instance: 'a'.repeat(24), specHash: '0'.repeat(64) },
  });
  started.push(h);
  if (h.pid === null) throw new Error('no pid');
  return h.pid;
}

/** `Field:\tvalue` from /proc/PID/status, once the wrapper has exec'd the command. */
async function status(pid: number, field: string): Promise<string> {
  for (let i = 0; i < 100; i++) {
    const text = await readFile(`/proc/${pid}/status`, 'utf8');
    if (/^Name:\s+sleep$/m.test(text)) return new RegExp(`^${field}:\\s+(.*)$`, 'm').exec(text)?.[1] ?? '';
    await new Promise((r) => setTimeout(r, 20));
  }
  throw new Error(`process ${pid} never became sleep`);
}

const root = process.getuid?.() === 0;

describe('process limits', () => {
  it.runIf(root)('runs the service as the given user, with its umask (as root)', async () => {
    const pid = await start(spec({ user: 'nobody', umask: '0027' }));
    expect((await status(pid, 'Uid')).split('\t')[0]).toBe('65534');
    expect(await status(pid, 'Umask')).toBe('0027');
  });

  it.runIf(!root)('refuses a user when the agent is not root, saying why', () => {
    expect(() => runtime.check(spec({ user: 'nobody' }), 'body/services/0')).toThrow(
      /^body\/services\/0\/user: the agent runs as uid \d+, not root/,
    );
  });

  it('enforces memory and cpu limits through a writable cgroup (v2, or v1 beneath our own), or refuses them at apply naming why', async () => {
    const found = cgroupLayout();
    if ('problem' in found) {
      expect(() => runtime.check(spec({ memory: '64m', cpus: 0.5 }), 'body/services/0')).toThrow(
        `body/services/0/memory: ${found.problem}`,
      );
      return;
    }
    runtime.check(spec({ memory: '64m', cpus: 0.5 }), 'body/services/0');
    const pid = await start(spec({ memory: '64m', cpus: 0.5 }));
    await status(pid, 'Name');
    // `N:controllers:/path` per hierarchy; v2 has the one line `0::/path`.
    const lines = (await readFile(`/proc/${pid}/cgroup`, 'utf8')).trim().split('\n');
    const pathOf = (controller: string): string => {
      const line = lines.find((l) => l.split(':')[1]?.split(',').includes(controller));
      return line?.split(':').at(-1) ?? '';
    };
    if (found.layout.kind === 'v2') {
      const cg = lines.find((l) => l.startsWith('0::'))?.slice(3) ?? '';
      cgroups.push(`/sys/fs/cgroup${cg}`);
      expect(cg).toMatch(/corral-a{12}-limited$/);
      expect((await readFile(`/sys/fs/cgroup${cg}/memory.max`, 'utf8')).trim()).toBe(
        String(64 * 1024 * 1024),
      );
      expect((await readFile(`/sys/fs/cgroup${cg}/cpu.max`, 'utf8')).trim()).toBe('50000 100000');
    } else {
      const memory = join(found.layout.memory, 'corral-aaaaaaaaaaaa-limited');
      const cpu = join(found.layout.cpu, 'corral-aaaaaaaaaaaa-limited');
      cgroups.push(memory, cpu);
      expect(pathOf('memory')).toMatch(/\/corral-a{12}-limited$/);
      expect(pathOf('cpu')).toMatch(/\/corral-a{12}-limited$/);
      expect((await readFile(join(memory, 'cgroup.procs'), 'utf8')).split('\n')).toContain(String(pid));
      expect((await readFile(join(cpu, 'cgroup.procs'), 'utf8')).split('\n')).toContain(String(pid));
      expect((await readFile(join(memory, 'memory.limit_in_bytes'), 'utf8')).trim()).toBe(
        String(64 * 1024 * 1024),
      );
      expect((await readFile(join(cpu, 'cpu.cfs_quota_us'), 'utf8')).trim()).toBe('50000');
      expect((await readFile(join(cpu, 'cpu.cfs_period_us'), 'utf8')).trim()).toBe('100000');
    }
    // Once the service has exited, its cgroups are gone.
    const dirs = found.layout.kind === 'v2' ? cgroups.slice(-1) : cgroups.slice(-2);
    expect(dirs.every((d) => existsSync(d))).toBe(true);
    process.kill(pid, 'SIGKILL');
    await expect.poll(() => dirs.filter((d) => existsSync(d)), { timeout: 10_000 }).toEqual([]);
  });

  it('refuses a workingDir outside the allowed dirs', () => {
    expect(() => runtime.check(spec({ workingDir: '/etc' }), 'body/services/0')).toThrow(
      'body/services/0/workingDir: /etc is outside the directories this agent allows for working dirs (none configured)',
    );
    const allowing = createProcessRuntime({ allowedWorkingDirs: ['/srv/apps'] });
    expect(() => allowing.check(spec({ workingDir: '/srv/apps/one' }), 'w')).not.toThrow();
    expect(() => allowing.check(spec({ workingDir: '/srv/apps/../etc' }), 'w')).toThrow(/outside/);
    allowing.close();
  });
});

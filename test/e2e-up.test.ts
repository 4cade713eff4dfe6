import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { access, readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { runCorral } from '../cli/up/corral-cli.js';
import { CLI, isAlive, pidsWhere, poll } from './fleet-fixture.js';

const WORKERS = 2;
const SAMPLE_SERVICES = 5;

async function servicePids(dir: string): Promise<number[]> {
  const pids: number[] = [];
  for (let n = 1; n <= WORKERS; n++) {
    const root = join(dir, `worker-${n}`, 'state', 'services');
    for (const name of await readdir(root).catch(() => [] as string[])) {
      const rec = JSON.parse(await readFile(join(root, name, 'state.json'), 'utf8')) as {
        ref: { kind: string; pid?: number } | null;
      };
      if (rec.ref?.pid !== undefined) pids.push(rec.ref.pid);
    }
  }
  return pids;
}

describe('corral up', () => {
  it('brings up a fleet, shows hosts online and services running, and on Ctrl-C stops all of it and removes its dir', async () => {
    const child = spawn(
      process.execPath,
      [
        CLI.bin,
        'up',
        '--workers',
        String(WORKERS),
        '--refresh',
        '1s',
        '--heartbeat-interval',
        '2s',
        '--for',
        '600s',
      ],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let out = '';
    let err = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    const exited = once(child, 'exit');
    let dir = '';
    let pids: number[] = [];
    try {
      dir = await poll(
        'the temp dir announced',
        async () => /^corral up: \d+ workers? in (\S+)$/m.exec(out)?.[1],
      );
      const snapshot = await poll(
        'a snapshot with every host online and every service running',
        async () => {
          if (child.exitCode !== null) throw new Error(`corral up exited: ${err}`);
          const last = out.split('\n--- ').at(-1) ?? '';
          const hosts = last.split('\n').filter((l) => /^worker-\d+ /.test(l));
          const services = last.split('\n').filter((l) => / worker-\d+ /.test(l) && !/^worker-/.test(l));
          const ok =
            hosts.length === WORKERS &&
            hosts.every((l) => / online /.test(l)) &&
            services.length === SAMPLE_SERVICES &&
            services.every((l) => / running /.test(l));
          return ok ? last : undefined;
        },
        // Includes installing release 0 (one copy of Corral) and each worker.
        300_000,
      );
      expect(out).toContain(`CORRAL_HOME=${join(dir, 'controller')} npx corral controller services`);
      expect(snapshot).toMatch(/^HOST +ADDRESS +STATUS/m);
      pids = await servicePids(dir);
      expect(pids).toHaveLength(SAMPLE_SERVICES);
      for (const pid of pids) expect(await isAlive(pid)).toBe(true);
      expect((await pidsWhere((c) => c.includes(dir))).length).toBeGreaterThanOrEqual(1 + 3 * WORKERS);

      // The updater owns each agent from the start, so the first update is an ordinary swap.
      const version = /release (\S+) installed once for every worker \((\S+)\)/.exec(out);
      expect(version, out).not.toBeNull();
      // The release an operator makes: `corral release build` (one bundled file, not the tree).
      const next = `${version![1]}-up.1`;
      const env = { ...process.env, CORRAL_HOME: join(dir, 'controller') };
      const tarball = join(dir, 'next.tar.gz');
      const built = await runCorral(CLI, ['release', 'build', '--version', next, '--out', tarball], {
        timeoutMs: 600_000,
      });
      expect(built.code, built.stderr).toBe(0);
      const update = await runCorral(CLI, ['controller', 'update', '--release', tarball, '--all', '--json'], {
        env,
        timeoutMs: 600_000,
      });
      expect(update.code, update.stderr).toBe(0);
      const hosts = (JSON.parse(update.stdout) as { hosts: { outcome: string }[] }).hosts;
      expect(hosts.map((h) => h.outcome)).toEqual(Array.from({ length: WORKERS }, () => 'updated'));
    } finally {
      child.kill('SIGINT');
      await exited;
    }
    expect(child.exitCode).toBe(0);
    expect(out).toContain(`stopped ${SAMPLE_SERVICES} service processes`);
    expect(out).toContain(`removed ${dir}`);
    await expect(access(dir)).rejects.toThrow();
    for (const pid of pids) expect(await isAlive(pid)).toBe(false);
    expect(await pidsWhere((c) => c.includes(dir))).toEqual([]);
  }, 900_000);
});

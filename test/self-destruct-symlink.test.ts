import { mkdir, mkdtemp, readdir, readFile, rename, rm, symlink, writeFile, lstat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEFAULT_STOP_GRACE_MS, planFromDisk, serviceDirs, type ReaperReport } from '../agent/index.js';
import { readEndpointsFile } from '../kit/endpoints-file.js';
import {
  agentCaller,
  killServices,
  makePki,
  makeWorker,
  runCorral,
  spawnCorral,
  waitFor,
  type TestPki,
} from './agent-fixture.js';

/**
 * A symlinked `--extra-dir` once made self-destruct delete the contents of whatever it pointed
 * to. Every directory to delete is now checked with lstat when the plan is made and again by
 * the reaper right before it deletes; a symbolic link is refused and its target left alone.
 */
let pki: TestPki;
let root: string;

/** A directory of someone else's that a link points at; its contents must survive. */
async function precious(name: string): Promise<string> {
  const dir = join(root, name);
  await mkdir(join(dir, 'sub'), { recursive: true });
  await writeFile(join(dir, 'data.txt'), 'keep me');
  await writeFile(join(dir, 'sub', 'more.txt'), 'and me');
  return dir;
}

async function intact(dir: string): Promise<void> {
  expect(await readFile(join(dir, 'data.txt'), 'utf8')).toBe('keep me');
  expect(await readFile(join(dir, 'sub', 'more.txt'), 'utf8')).toBe('and me');
}

beforeAll(async () => {
  pki = await makePki();
  root = await mkdtemp(join(tmpdir(), 'corral-sdlink-'));
});

afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

describe('self-destruct and symbolic links', () => {
  it('refuses a symlinked --extra-dir in the dry run, naming it, and deletes nothing', async () => {
    const target = await precious('target-dry');
    const worker = await makeWorker(pki, '127.0.0.1:9', { stateDir: join(root, 'state-dry') });
    const link = join(root, 'forwarder-state-dry');
    await symlink(target, link);
    const res = await runCorral([
      'agent',
      'self-destruct',
      '--dry-run',
      '--state-dir',
      worker.stateDir,
      '--extra-dir',
      link,
    ]);
    expect(res.code).toBe(1);
    expect(res.stderr).toContain(`refusing to delete ${link}: it is a symbolic link`);
    expect(res.stderr).toContain('CORRAL_ERR_VALIDATION');
    await intact(target);

    // `--yes` plans the same way first, so it refuses before deleting anything at all.
    const yes = await runCorral([
      'agent',
      'self-destruct',
      '--yes',
      '--state-dir',
      worker.stateDir,
      '--extra-dir',
      link,
    ]);
    expect(yes.code).toBe(1);
    expect(yes.stderr).toContain('is a symbolic link');
    await intact(target);
    expect(await readdir(worker.stateDir)).toContain('bundle');
  });

  it("refuses at the agent's own plan: POST /v1/self-destruct is a 400 and the agent keeps running", async () => {
    const target = await precious('target-agent');
    const worker = await makeWorker(pki, '127.0.0.1:9', {
      hostId: 'linked',
      stateDir: join(root, 'state-agent'),
    });
    const link = join(root, 'updater-state-agent');
    await symlink(target, link);
    const agent = spawnCorral([
      'agent',
      'serve',
      '--state-dir',
      worker.stateDir,
      '--listen',
      '127.0.0.1:0',
      '--extra-dir',
      link,
      '--log-level',
      'warn',
    ]);
    try {
      const address = await waitFor(
        `agent listening (${agent.output()})`,
        async () => (await readEndpointsFile(worker.stateDir))?.agent,
      );
      const c = agentCaller(address, pki.controllerClient, worker.agentFingerprint);
      try {
        const res = await c.call<{ error: { code: string; message: string } }>('POST', '/v1/self-destruct', {
          hostId: 'linked',
        });
        expect(res.status).toBe(400);
        expect(res.body.error.code).toBe('CORRAL_ERR_VALIDATION');
        expect(res.body.error.message).toContain('is a symbolic link');
        expect((await c.call('GET', '/v1/health')).status).toBe(200);
      } finally {
        await c.close();
      }
      expect(agent.exitCode).toBeNull();
      await intact(target);
      expect(await readdir(worker.stateDir)).toContain('bundle');
    } finally {
      agent.kill('SIGKILL');
      await killServices(worker.stateDir);
    }
  });

  it('refuses at reap time a directory swapped for a link after the plan was made, and still deletes the rest', async () => {
    const target = await precious('target-swap');
    const worker = await makeWorker(pki, '127.0.0.1:9', { stateDir: join(root, 'state-swap') });
    const extra = join(root, 'forwarder-state-swap');
    const install = join(root, 'install-swap');
    await mkdir(extra);
    await writeFile(join(extra, 'positions.db'), 'x');
    await mkdir(join(install, 'releases'), { recursive: true });
    await mkdir(join(worker.stateDir, 'logs'));
    const config = {
      stateDir: worker.stateDir,
      installDirs: [install],
      extraDirs: [extra],
      keepDirs: [join(worker.stateDir, 'logs')],
      units: [],
      logFile: join(worker.stateDir, 'logs', 'worker.log'),
    };
    // The plan, made while `extra` was a real directory, passes the plan-time check...
    const plan = await planFromDisk(
      worker.stateDir,
      config,
      serviceDirs(join(worker.stateDir, 'services')),
      DEFAULT_STOP_GRACE_MS,
    );
    expect(plan.deleteDirs).toEqual([worker.stateDir, install, extra]);
    const planFile = join(root, 'plan-swap.json');
    await writeFile(planFile, JSON.stringify(plan), { mode: 0o600 });
    // ...then the directory is swapped for a link before the reaper runs.
    await rename(extra, `${extra}.old`);
    await symlink(target, extra);

    const res = await runCorral(['agent', 'reap', '--plan', planFile]);
    expect(res.code).toBe(0);
    const report = JSON.parse(res.stdout) as ReaperReport;
    expect(report.errors).toEqual([
      `delete ${extra}: refusing to delete ${extra}: it is a symbolic link; name the directory itself`,
    ]);
    await intact(target);
    expect((await lstat(extra)).isSymbolicLink()).toBe(true);
    expect(report.deleted).toContain(install);
    expect(await readdir(root)).not.toContain('install-swap');
    expect(await readdir(worker.stateDir)).toEqual(['logs']);
  });
});

import { execFile } from 'node:child_process';
import { readdir, readFile, readlink, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { pushRelease } from '../controller/release/push.js';
import { fetchReleases, requestRollback } from '../controller/release/updater-client.js';
import type { UpdaterStateFile } from '../protocol/index.js';
import { isAlive } from '../kit/proc.js';
import {
  agentHealth,
  agentVersion,
  buildRelease,
  CORRAL_BIN,
  createFleet,
  createWorker,
  killRecordedAgent,
  spawnUpdater,
  target,
  tempDir,
  until,
  type BuiltRelease,
  type Fleet,
  type UpdaterProcess,
  type Worker,
} from './updater-harness.js';

let fleet: Fleet;
let dir: string;
let v1: BuiltRelease;
let v2: BuiltRelease;
const procs: UpdaterProcess[] = [];
const workers: Worker[] = [];

beforeAll(async () => {
  fleet = await createFleet();
  dir = await tempDir('updater-crash');
  [v1, v2] = await Promise.all([buildRelease(dir, '1.0.0'), buildRelease(dir, '2.0.0')]);
});

afterEach(async () => {
  for (const p of procs.splice(0)) await p.stop();
  for (const w of workers.splice(0)) await killRecordedAgent(w);
});

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

let n = 0;
/** A worker whose updater (a real `corral updater serve` process) has 1.0.0 live, then stopped. */
async function workerOnV1(): Promise<Worker> {
  const w = await createWorker(fleet, join(dir, `w${++n}`), `w-${n}`);
  workers.push(w);
  const p = await spawnUpdater(w);
  const r = await pushRelease({ file: v1.file, targets: [target(w, p.port)], tls: fleet.controllerClient });
  expect(r.results[0]?.outcome).toBe('updated');
  await p.stop();
  return w;
}

async function started(w: Worker, env: Record<string, string> = {}): Promise<UpdaterProcess> {
  const p = await spawnUpdater(w, { env });
  procs.push(p);
  return p;
}

async function state(w: Worker): Promise<UpdaterStateFile> {
  return JSON.parse(await readFile(join(w.root, '.updater', 'state.json'), 'utf8')) as UpdaterStateFile;
}

async function stagingDirs(w: Worker): Promise<string[]> {
  return (await readdir(w.root)).filter((f) => f.startsWith('.staging-'));
}

async function killHard(p: UpdaterProcess): Promise<void> {
  p.child.kill('SIGKILL');
  await until(
    async () => (p.child.exitCode !== null || p.child.signalCode !== null ? true : undefined),
    'the kill',
  );
}

describe('updater crash safety (kill -9 of a real updater process mid-update)', () => {
  it('after a kill between the swap and the health check, the next start rolls back to the previous release', async () => {
    const w = await workerOnV1();
    const p = await started(w, { CORRAL_TEST_UPDATER_PAUSE: 'agent-started:120000' });
    const pushing = pushRelease({ file: v2.file, targets: [target(w, p.port)], tls: fleet.controllerClient });
    // Held after the swap, with the new agent started but not yet confirmed healthy.
    const newAgent = await until(async () => {
      const s = await state(w);
      const h = await agentHealth(w);
      return s.intent?.phase === 'activating' && h?.version === '2.0.0' ? h : undefined;
    }, 'the update to reach the swap');
    expect(await readlink(join(w.root, 'current'))).toBe('releases/2.0.0');
    await killHard(p);
    expect((await pushing).results[0]?.outcome).toBe('failed');

    const again = await started(w);
    expect(await readlink(join(w.root, 'current'))).toBe('releases/1.0.0');
    expect(await agentVersion(w)).toBe('1.0.0');
    // Gone (a zombie left to whoever inherited it counts as gone).
    expect(await isAlive(newAgent.pid)).toBe(false);
    expect(await readdir(join(w.root, 'releases'))).toEqual(['1.0.0']);
    expect(await stagingDirs(w)).toEqual([]);
    expect((await state(w)).intent).toBeNull();
    const rel = await fetchReleases(target(w, again.port), fleet.controllerClient);
    expect(rel.current).toBe('1.0.0');
    expect(rel.history.at(-1)).toMatchObject({ version: '2.0.0', outcome: 'recovered' });
    // The interrupted version is not blocked: pushing it again works.
    const retry = await pushRelease({
      file: v2.file,
      targets: [target(w, again.port)],
      tls: fleet.controllerClient,
    });
    expect(retry.results[0]).toMatchObject({ outcome: 'updated', current: '2.0.0' });
  });

  it('after a kill while the release sits in staging, the next start removes it and keeps the running agent', async () => {
    const w = await workerOnV1();
    const p = await started(w, { CORRAL_TEST_UPDATER_PAUSE: 'staged:120000' });
    const before = await until(() => agentHealth(w), 'the 1.0.0 agent');
    const pushing = pushRelease({ file: v2.file, targets: [target(w, p.port)], tls: fleet.controllerClient });
    await until(async () => {
      const dirs = await stagingDirs(w);
      const tree = dirs[0] ? await readdir(join(w.root, dirs[0], 'tree')).catch(() => []) : [];
      return tree.includes('manifest.json') ? true : undefined;
    }, 'the release to be staged');
    expect((await state(w)).intent).toMatchObject({ phase: 'staging', to: '2.0.0', from: '1.0.0' });
    await killHard(p);
    expect((await pushing).results[0]?.outcome).toBe('failed');

    const again = await started(w);
    expect(await stagingDirs(w)).toEqual([]);
    expect(await readdir(join(w.root, 'releases'))).toEqual(['1.0.0']);
    expect(await readlink(join(w.root, 'current'))).toBe('releases/1.0.0');
    // The 1.0.0 agent never stopped: the restarted updater adopted it.
    expect((await agentHealth(w))?.pid).toBe(before.pid);
    const rel = await fetchReleases(target(w, again.port), fleet.controllerClient);
    expect(rel.history.at(-1)).toMatchObject({ version: '2.0.0', outcome: 'interrupted' });
  });

  it('a kill at any step of a re-push that replaces the rollback target leaves the old copy in place', async () => {
    const broken = await buildRelease(dir, '1.0.0', 'crash');
    const w = await workerOnV1();
    const toV2 = async (p: UpdaterProcess): Promise<void> => {
      const r = await pushRelease({
        file: v2.file,
        targets: [target(w, p.port)],
        tls: fleet.controllerClient,
      });
      expect(r.results[0]).toMatchObject({ outcome: 'updated', current: '2.0.0' });
    };
    let live = await started(w);
    await toV2(live);
    for (const phase of ['staged', 'replacing', 'set-aside', 'swapped', 'agent-started'] as const) {
      // On 2.0.0 with 1.0.0 (good) as the rollback target; a broken build named 1.0.0 is pushed.
      await live.stop();
      procs.splice(procs.indexOf(live), 1);
      const held = await started(w, { CORRAL_TEST_UPDATER_PAUSE: `${phase}:120000` });
      const pushing = pushRelease({
        file: broken.file,
        targets: [target(w, held.port)],
        tls: fleet.controllerClient,
      });
      const staging = async (): Promise<string[]> => {
        const d = (await stagingDirs(w))[0];
        return d ? readdir(join(w.root, d)).catch((): string[] => []) : [];
      };
      // Each phase shows on disk: what the journal says, and what the staging dir holds.
      const reached: Record<typeof phase, () => Promise<boolean>> = {
        staged: async () =>
          (await state(w)).intent?.phase === 'staging' && (await staging()).includes('tree'),
        replacing: async () => (await state(w)).intent?.replaced !== undefined,
        'set-aside': async () => (await staging()).includes('replaced'),
        swapped: async () => (await state(w)).intent?.phase === 'activating',
        'agent-started': async () => (await state(w)).intent?.phase === 'activating',
      };
      await until(async () => ((await reached[phase]()) ? true : undefined), `the re-push to reach ${phase}`);
      if (phase === 'staged') {
        await until(async () => {
          const tree = await readdir(join(w.root, (await stagingDirs(w))[0]!, 'tree')).catch(
            (): string[] => [],
          );
          return tree.includes('manifest.json') ? true : undefined;
        }, 'the release to be staged');
      }
      await killHard(held);
      expect((await pushing).results[0]?.outcome).toBe('failed');

      const again = await started(w);
      expect(await readlink(join(w.root, 'current'))).toBe('releases/2.0.0');
      expect((await readdir(join(w.root, 'releases'))).sort()).toEqual(['1.0.0', '2.0.0']);
      expect(await readFile(join(w.root, 'releases', '1.0.0', 'manifest.json'), 'utf8')).toContain('"good"');
      expect(await stagingDirs(w)).toEqual([]);
      const rel = await fetchReleases(target(w, again.port), fleet.controllerClient);
      expect(rel).toMatchObject({ current: '2.0.0', previous: '1.0.0' });
      expect(rel.releases.find((r) => r.version === '1.0.0')?.sha256).toBe(v1.sha256);
      const rb = await requestRollback(target(w, again.port), fleet.controllerClient);
      expect(rb).toMatchObject({ outcome: 'rolled-back', current: '1.0.0' });
      expect(await agentVersion(w)).toBe('1.0.0');
      await toV2(again);
      live = again;
    }
  }, 300_000);

  it('refuses --keep below 2, as a usage error', async () => {
    const w = await createWorker(fleet, join(dir, 'keep1'), 'w-k1');
    const run = promisify(execFile);
    const args = [CORRAL_BIN, 'updater', 'serve', '--state-dir', w.stateDir, '--root', w.root, '--keep', '1'];
    const err = await run(process.execPath, args).then(
      () => undefined,
      (e: unknown) => e as { code: number; stderr: string },
    );
    expect(err?.code).toBe(2);
    expect(err?.stderr).toContain(
      '--keep must be at least 2 (the current release and the one a rollback goes to)',
    );
  });

  it('refuses to start without its identity', async () => {
    const w = await createWorker(fleet, join(dir, 'nobundle'), 'w-nb');
    await rm(join(w.stateDir, 'bundle'), { recursive: true });
    const run = promisify(execFile);
    const err = await run(process.execPath, [
      CORRAL_BIN,
      'updater',
      'serve',
      '--state-dir',
      w.stateDir,
      '--root',
      w.root,
    ]).then(
      () => undefined,
      (e: unknown) => e as { code: number; stderr: string },
    );
    expect(err?.code).toBe(2);
    expect(err?.stderr).toContain('CORRAL_ERR_BUNDLE_MISSING');
  });
});

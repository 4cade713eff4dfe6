/**
 * The watch period after activation: a release whose agent passes its health check and goes
 * bad a few seconds later is rolled back within the watch, and the push reports `rolled-back`
 * (the answer comes only after the watch). Real updater processes and real agent processes
 * (the stand-in agent of test/updater-harness.ts).
 */
import { execFile } from 'node:child_process';
import { readdir, readFile, readlink, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { pushRelease } from '../controller/release/push.js';
import { fetchReleases } from '../controller/release/updater-client.js';
import type { UpdaterStateFile } from '../protocol/index.js';
import {
  agentVersion,
  buildRelease,
  CORRAL_BIN,
  CRASH_LATER_MS,
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
let crashLater: BuiltRelease;
let unhealthyLater: BuiltRelease;
const procs: UpdaterProcess[] = [];
const workers: Worker[] = [];

/** Long enough to see the stand-in go bad CRASH_LATER_MS after it came up. */
const WATCH = '10s';

beforeAll(async () => {
  fleet = await createFleet();
  dir = await tempDir('updater-watch');
  [v1, crashLater, unhealthyLater] = await Promise.all([
    buildRelease(dir, '1.0.0'),
    buildRelease(dir, '2.0.0', 'crash-later'),
    buildRelease(dir, '3.0.0', 'unhealthy-later'),
  ]);
});

afterEach(async () => {
  for (const p of procs.splice(0)) await p.stop();
  for (const w of workers.splice(0)) await killRecordedAgent(w);
});

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function journal(w: Worker): Promise<UpdaterStateFile> {
  return JSON.parse(await readFile(join(w.root, '.updater', 'state.json'), 'utf8')) as UpdaterStateFile;
}

let n = 0;
async function workerOnV1(extraArgs: string[] = []): Promise<{ w: Worker; p: UpdaterProcess }> {
  const w = await createWorker(fleet, join(dir, `w${++n}`), `w-${n}`);
  workers.push(w);
  // 1.0.0 goes in under the harness's short watch; then the updater restarts with `extraArgs`.
  const setup = await spawnUpdater(w);
  const first = await push(w, setup, v1);
  expect(first).toMatchObject({ outcome: 'updated', current: '1.0.0' });
  await setup.stop();
  const p = await spawnUpdater(w, { extraArgs });
  procs.push(p);
  await until(agentVersion.bind(null, w), 'the 1.0.0 agent');
  return { w, p };
}

async function push(w: Worker, p: UpdaterProcess, release: BuiltRelease) {
  const report = await pushRelease({
    file: release.file,
    sha256: release.sha256,
    targets: [target(w, p.port)],
    tls: fleet.controllerClient,
  });
  return report.results[0]!;
}

describe('watch period after activation', () => {
  it(`rolls back a release whose agent passes health and exits ${CRASH_LATER_MS / 1000} s later`, async () => {
    const { w, p } = await workerOnV1(['--watch', WATCH]);
    const result = await push(w, p, crashLater);
    expect(result.outcome).toBe('rolled-back');
    expect(result.current).toBe('1.0.0');
    expect(result.reason).toMatch(
      /release 2\.0\.0: agent exited with code 4, \d+\.\d s after it reported healthy \(watch 10\.0 s\)/,
    );
    expect(result.agentOutput).toContain('lost its database connection');
    expect(await agentVersion(w)).toBe('1.0.0');
    expect(await readlink(join(w.root, 'current'))).toBe('releases/1.0.0');
    expect(await readdir(join(w.root, 'releases'))).toEqual(['1.0.0']);
    const rel = await fetchReleases(target(w, p.port), fleet.controllerClient);
    expect(rel).toMatchObject({ current: '1.0.0', busy: false, timing: { watchMs: 10_000 } });
    expect(rel.history.at(-1)).toMatchObject({ version: '2.0.0', outcome: 'rolled-back' });
    // Like any rolled-back version, it is refused until forced.
    expect((await push(w, p, crashLater)).code).toBe('CORRAL_ERR_RELEASE_REFUSED');
  }, 90_000);

  it('rolls back a release whose agent stops answering health within the watch', async () => {
    const { w, p } = await workerOnV1(['--watch', WATCH]);
    const result = await push(w, p, unhealthyLater);
    expect(result.outcome).toBe('rolled-back');
    expect(result.current).toBe('1.0.0');
    expect(result.reason).toMatch(/release 3\.0\.0: health failed for \d+\.\d s/);
    expect(result.agentOutput).toContain('wedged');
    expect(await agentVersion(w)).toBe('1.0.0');
  }, 90_000);

  it('a release that stays healthy through the watch is updated, and answered only after it', async () => {
    const { w, p } = await workerOnV1(['--watch', WATCH]);
    const v2 = await buildRelease(dir, '2.1.0');
    let answered = false;
    const pushing = push(w, p, v2).finally(() => (answered = true));
    await until(
      async () => ((await journal(w)).intent?.phase === 'watching' ? true : undefined),
      'the watch',
    );
    // Healthy already, but the push is not answered while the watch runs.
    expect(await agentVersion(w)).toBe('2.1.0');
    expect((await fetchReleases(target(w, p.port), fleet.controllerClient)).busy).toBe(true);
    expect(answered).toBe(false);
    const result = await pushing;
    expect(result).toMatchObject({ outcome: 'updated', current: '2.1.0', reason: null });
    expect((await journal(w)).intent).toBeNull();
    expect(await agentVersion(w)).toBe('2.1.0');
  }, 90_000);

  it('an updater killed during the watch rolls the unconfirmed release back when it starts again', async () => {
    const { w, p } = await workerOnV1(['--watch', '60s']);
    const v2 = await buildRelease(dir, '2.2.0');
    const pushing = push(w, p, v2);
    await until(
      async () => ((await journal(w)).intent?.phase === 'watching' ? true : undefined),
      'the watch',
    );
    expect(await agentVersion(w)).toBe('2.2.0');
    p.child.kill('SIGKILL');
    await until(async () => (p.child.signalCode !== null ? true : undefined), 'the kill');
    expect((await pushing).outcome).toBe('failed');

    const again = await spawnUpdater(w);
    procs.push(again);
    expect(await readlink(join(w.root, 'current'))).toBe('releases/1.0.0');
    expect(await agentVersion(w)).toBe('1.0.0');
    const rel = await fetchReleases(target(w, again.port), fleet.controllerClient);
    expect(rel.history.at(-1)).toMatchObject({ version: '2.2.0', outcome: 'recovered' });
    expect(rel.history.at(-1)?.reason).toContain('during the watch period of 2.2.0');
  }, 90_000);

  it('refuses a --watch that is not a duration, as a usage error', async () => {
    const w = await createWorker(fleet, join(dir, 'badwatch'), 'w-bw');
    const args = [CORRAL_BIN, 'updater', 'serve', '--state-dir', w.stateDir, '--root', w.root];
    const err = await promisify(execFile)(process.execPath, [...args, '--watch', 'soon']).then(
      () => undefined,
      (e: unknown) => e as { code: number; stderr: string },
    );
    expect(err?.code).toBe(2);
    expect(err?.stderr).toContain('--watch: expected a duration like 30s');
  });
});

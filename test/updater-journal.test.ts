/**
 * The updater's own state files damaged the way the world damages them (deleted, emptied,
 * half-written, the tree around them changed), with real `corral updater serve` processes:
 * where the release tree allows it the journal is rebuilt, with a warning that names the file
 * and what was lost, and rollback still works; where it does not, the updater refuses to start
 * naming the file and the recovery. A first start stays quiet.
 */
import { execFile } from 'node:child_process';
import { readdir, readFile, readlink, rm, symlink, unlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { pushRelease } from '../controller/release/push.js';
import { fetchReleases, requestRollback } from '../controller/release/updater-client.js';
import {
  agentVersion,
  buildRelease,
  CORRAL_BIN,
  createFleet,
  createWorker,
  killRecordedAgent,
  spawnUpdater,
  target,
  tempDir,
  type BuiltRelease,
  type Fleet,
  type UpdaterProcess,
  type Worker,
} from './updater-harness.js';

let fleet: Fleet;
let dir: string;
let v1: BuiltRelease;
let v2: BuiltRelease;
let v3: BuiltRelease;
const procs: UpdaterProcess[] = [];
const workers: Worker[] = [];
const run = promisify(execFile);

beforeAll(async () => {
  fleet = await createFleet();
  dir = await tempDir('updater-journal');
  [v1, v2, v3] = await Promise.all([
    buildRelease(dir, '1.0.0'),
    buildRelease(dir, '2.0.0'),
    buildRelease(dir, '3.0.0'),
  ]);
});

afterEach(async () => {
  for (const p of procs.splice(0)) await p.stop();
  for (const w of workers.splice(0)) await killRecordedAgent(w);
});

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

const stateFile = (w: Worker): string => join(w.root, '.updater', 'state.json');
const historyFile = (w: Worker): string => join(w.root, '.updater', 'history.json');

async function started(w: Worker, extraArgs: string[] = []): Promise<UpdaterProcess> {
  const p = await spawnUpdater(w, { extraArgs });
  procs.push(p);
  return p;
}

async function push(w: Worker, p: UpdaterProcess, release: BuiltRelease) {
  const report = await pushRelease({
    file: release.file,
    targets: [target(w, p.port)],
    tls: fleet.controllerClient,
  });
  return report.results[0]!;
}

let n = 0;
/** A worker on 2.0.0 with 1.0.0 as its rollback target, its updater stopped. */
async function workerOnV2(): Promise<Worker> {
  const w = await createWorker(fleet, join(dir, `w${++n}`), `w-${n}`);
  workers.push(w);
  const p = await spawnUpdater(w);
  // A first start says nothing about state files.
  expect(await p.settledOutput()).not.toContain('warning');
  expect(await p.settledOutput()).not.toContain('rebuilt');
  expect(await push(w, p, v1)).toMatchObject({ outcome: 'updated', current: '1.0.0' });
  expect(await push(w, p, v2)).toMatchObject({ outcome: 'updated', current: '2.0.0' });
  await p.stop();
  return w;
}

/** Starts the updater expecting it to refuse; returns its exit code and stderr. */
async function refused(w: Worker, extraArgs: string[] = []): Promise<{ code: number; stderr: string }> {
  const args = [CORRAL_BIN, 'updater', 'serve', '--state-dir', w.stateDir, '--root', w.root];
  const agentArgs = ['--agent-state-dir', join(w.stateDir, 'agent'), '--listen', '127.0.0.1:0'];
  return run(process.execPath, [...args, ...agentArgs, ...extraArgs]).then(
    (r) => ({ code: 0, stderr: r.stderr }),
    (e: unknown) => e as { code: number; stderr: string },
  );
}

/** After a rebuild: 1.0.0 is still the rollback target, and rolling back to it works. */
async function rollbackStillWorks(w: Worker, p: UpdaterProcess): Promise<void> {
  expect((await readdir(join(w.root, 'releases'))).sort()).toEqual(['1.0.0', '2.0.0']);
  const rel = await fetchReleases(target(w, p.port), fleet.controllerClient);
  expect(rel).toMatchObject({ current: '2.0.0', previous: '1.0.0' });
  expect(rel.releases.map((r) => [r.version, r.sha256])).toEqual([
    ['1.0.0', null],
    ['2.0.0', null],
  ]);
  const rb = await requestRollback(target(w, p.port), fleet.controllerClient);
  expect(rb).toMatchObject({ outcome: 'rolled-back', current: '1.0.0', previous: '2.0.0' });
  expect(await agentVersion(w)).toBe('1.0.0');
  // And the next update keeps the new rollback target (1.0.0) on disk.
  expect(await push(w, p, v3)).toMatchObject({ outcome: 'updated', current: '3.0.0' });
  expect(await fetchReleases(target(w, p.port), fleet.controllerClient)).toMatchObject({ previous: '1.0.0' });
  expect((await readdir(join(w.root, 'releases'))).sort()).toEqual(['1.0.0', '2.0.0', '3.0.0']);
}

describe('updater journal damaged or lost', () => {
  it('a deleted journal is rebuilt from the tree, the rollback target taken from the history', async () => {
    const w = await workerOnV2();
    await rm(stateFile(w));
    const p = await started(w);
    const out = await p.settledOutput();
    expect(out).toContain(
      `corral updater: warning: updater journal ${stateFile(w)} is missing; rebuilt from the release tree`,
    );
    expect(out).toContain('rollback target 1.0.0 (from the release history)');
    expect(out).toContain('Lost: the digests of the installed releases');
    expect(out).not.toContain('the release history (');
    await rollbackStillWorks(w, p);
  });

  it('an empty journal, with the history deleted too, is rebuilt and says the history is lost', async () => {
    const w = await workerOnV2();
    await writeFile(stateFile(w), '');
    await rm(historyFile(w));
    const p = await started(w);
    const out = await p.settledOutput();
    expect(out).toMatch(
      new RegExp(
        `updater journal ${stateFile(w)} is empty \\(kept as ${stateFile(w)}\\.damaged-[0-9TZ-]+\\); rebuilt`,
      ),
    );
    expect(out).toContain('rollback target 1.0.0 (the newest other release on disk)');
    expect(out).toContain('versions that rolled back here are no longer refused');
    expect(out).toContain(`the release history (${historyFile(w)} is missing;`);
    // The damaged file is kept aside, not overwritten.
    const aside = (await readdir(join(w.root, '.updater'))).filter((f) =>
      f.startsWith('state.json.damaged-'),
    );
    expect(aside).toHaveLength(1);
    expect(await readFile(join(w.root, '.updater', aside[0]!), 'utf8')).toBe('');
    await rollbackStillWorks(w, p);
  });

  it('a half-written journal is never taken for an empty one: rebuilt, with the damage named', async () => {
    const w = await workerOnV2();
    const text = await readFile(stateFile(w), 'utf8');
    const half = text.slice(0, Math.floor(text.length / 2));
    await writeFile(stateFile(w), half);
    const p = await started(w);
    expect(await p.settledOutput()).toContain(`updater journal ${stateFile(w)} is damaged (not valid JSON)`);
    const aside = (await readdir(join(w.root, '.updater'))).filter((f) =>
      f.startsWith('state.json.damaged-'),
    );
    expect(await readFile(join(w.root, '.updater', aside[0]!), 'utf8')).toBe(half);
    await rollbackStillWorks(w, p);
  });

  it('a journal that fails its schema is rebuilt, and the warning says where it failed', async () => {
    const w = await workerOnV2();
    const state = JSON.parse(await readFile(stateFile(w), 'utf8')) as { previous: unknown };
    state.previous = '../../etc';
    await writeFile(stateFile(w), JSON.stringify(state));
    const p = await started(w);
    expect(await p.settledOutput()).toContain(
      `updater journal ${stateFile(w)} is damaged (fails its schema at /previous`,
    );
    await rollbackStillWorks(w, p);
  });

  it('refuses to start when the journal is damaged and the tree cannot say what is active', async () => {
    const w = await workerOnV2();
    await writeFile(stateFile(w), '{"version":1,"previ');
    await unlink(join(w.root, 'current'));
    const r = await refused(w);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(`updater journal ${stateFile(w)} is damaged (not valid JSON)`);
    expect(r.stderr).toContain('there is no current link saying which one is active');
    expect(r.stderr).toContain(`Restore ${stateFile(w)} from a backup`);
    expect(r.stderr).toContain('corral updater serve --reinitialize');
    expect(r.stderr).toContain('removes every release except the one current points at');
    expect(r.stderr).toContain('CORRAL_ERR_STATE_DAMAGED');
    // Nothing changed: the damaged file and both releases are where they were.
    expect(await readFile(stateFile(w), 'utf8')).toBe('{"version":1,"previ');
    expect((await readdir(join(w.root, 'releases'))).sort()).toEqual(['1.0.0', '2.0.0']);

    // --reinitialize does what the refusal said, says what it destroyed, and the updater works again.
    const p = await started(w, ['--reinitialize']);
    const out = await p.settledOutput();
    expect(out).toContain(`--reinitialize: updater journal ${stateFile(w)} is damaged (not valid JSON)`);
    expect(out).toContain('removed releases 1.0.0, 2.0.0');
    expect(out).toContain('the updater starts on no release with no rollback target');
    expect(await readdir(join(w.root, 'releases'))).toEqual([]);
    expect(await push(w, p, v3)).toMatchObject({ outcome: 'updated', current: '3.0.0' });
  });

  it('refuses a deleted journal when current points at a release that is not on disk', async () => {
    const w = await workerOnV2();
    await rm(stateFile(w));
    await unlink(join(w.root, 'current'));
    await symlink('releases/9.9.9', join(w.root, 'current'));
    const r = await refused(w);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(`updater journal ${stateFile(w)} is missing`);
    expect(r.stderr).toContain('points at release 9.9.9, which is not on disk');

    const p = await started(w, ['--reinitialize']);
    expect(await p.settledOutput()).toContain('removed the current link, removed releases 1.0.0, 2.0.0');
    await expect(readlink(join(w.root, 'current'))).rejects.toThrow('ENOENT');
    expect(await push(w, p, v3)).toMatchObject({ outcome: 'updated', current: '3.0.0' });
  });

  it('a damaged history beside a sound journal is moved aside, and the warning says what that costs', async () => {
    const w = await workerOnV2();
    await writeFile(historyFile(w), '{"version":1,"entries":[{"time":');
    const p = await started(w);
    expect(await p.settledOutput()).toContain(
      `release history ${historyFile(w)} is damaged (not valid JSON)`,
    );
    expect(await p.settledOutput()).toContain('versions that rolled back here are no longer refused');
    const rel = await fetchReleases(target(w, p.port), fleet.controllerClient);
    expect(rel).toMatchObject({ current: '2.0.0', previous: '1.0.0', history: [] });
    expect(rel.releases.every((r) => r.sha256 !== null)).toBe(true);
  });

  it('--reinitialize on usable state changes nothing', async () => {
    const w = await workerOnV2();
    const p = await started(w, ['--reinitialize']);
    expect(await p.settledOutput()).toContain('reinitialize not needed');
    const rel = await fetchReleases(target(w, p.port), fleet.controllerClient);
    expect(rel).toMatchObject({ current: '2.0.0', previous: '1.0.0' });
    expect(rel.history.map((h) => h.outcome)).toEqual(['updated', 'updated']);
    expect((await readdir(join(w.root, 'releases'))).sort()).toEqual(['1.0.0', '2.0.0']);
  });

  it('a first start after a push refused before anything was journaled stays quiet', async () => {
    const w = await createWorker(fleet, join(dir, 'fresh'), 'w-fresh');
    workers.push(w);
    const small = await started(w, ['--max-release-bytes', '1000']);
    expect((await push(w, small, v1)).code).toBe('CORRAL_ERR_PAYLOAD_TOO_LARGE');
    await small.stop();
    procs.splice(procs.indexOf(small), 1);
    const p = await started(w);
    expect(await p.settledOutput()).not.toContain('warning');
    const rel = await fetchReleases(target(w, p.port), fleet.controllerClient);
    expect(rel).toMatchObject({ current: null, previous: null, releases: [] });
    expect(rel.history.map((h) => h.outcome)).toEqual(['refused']);
  });
});

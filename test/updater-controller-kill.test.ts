/**
 * A controller killed with SIGKILL in the middle of `controller update`, then the same push
 * again: every host ends `updated`, exit 0. Everything is a real process: `corral controller
 * serve`, three `corral updater serve` (enrolled through `corral controller enroll`, so the pins
 * are the controller's own), the stand-in agents, and the `corral controller update` CLI.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdir, readdir, readFile, readlink, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { AdminUpdateResponse } from '../protocol/admin-update.js';
import { readEndpointsFile } from '../kit/endpoints-file.js';
import type { UpdaterStateFile } from '../protocol/index.js';
import { corral } from './controller-fixture.js';
import { freePort } from './rsyslog-fixtures.js';
import {
  buildRelease,
  CORRAL_BIN,
  killRecordedAgent,
  spawnUpdater,
  tempDir,
  until,
  type BuiltRelease,
  type UpdaterProcess,
  type Worker,
} from './updater-harness.js';

let dir: string;
let state: string;
let controller: ChildProcess | undefined;
const workers: Worker[] = [];
const updaters: UpdaterProcess[] = [];
const releases: Record<string, BuiltRelease> = {};

/** Starts `corral controller serve` on loopback port 0 and waits for its endpoints file. */
async function serveController(): Promise<ChildProcess> {
  await rm(join(state, 'run', 'endpoints.json'), { force: true });
  const child = spawn(
    process.execPath,
    [
      CORRAL_BIN,
      'controller',
      'serve',
      '--state-dir',
      state,
      '--admin-listen',
      '127.0.0.1:0',
      '--worker-listen',
      '127.0.0.1:0',
      '--log-level',
      'warn',
    ],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
  let stderr = '';
  child.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
  await until(
    async () => {
      if (child.exitCode !== null) throw new Error(`controller exited early: ${stderr}`);
      return (await readEndpointsFile(state).catch(() => undefined))?.admin;
    },
    'the controller to listen',
    60_000,
  );
  return child;
}

async function killController(): Promise<void> {
  const c = controller;
  if (!c || c.exitCode !== null || c.signalCode !== null) return;
  const exited = once(c, 'exit');
  c.kill('SIGKILL');
  await exited;
}

/** `corral controller update --release F --all --json`, as a child we can watch while it runs. */
function startUpdate(release: BuiltRelease): {
  done: Promise<{ code: number; stdout: string; stderr: string }>;
} {
  const child = spawn(
    process.execPath,
    [CORRAL_BIN, 'controller', 'update', '--state-dir', state, '--release', release.file, '--all', '--json'],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let stdout = '';
  let stderr = '';
  child.stdout?.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
  const done = once(child, 'exit').then(([code]) => ({ code: code as number, stdout, stderr }));
  return { done };
}

async function journal(w: Worker): Promise<UpdaterStateFile | undefined> {
  try {
    return JSON.parse(await readFile(join(w.root, '.updater', 'state.json'), 'utf8')) as UpdaterStateFile;
  } catch (e: unknown) {
    void e; // not written yet, or being replaced this instant
    return undefined;
  }
}

async function stagingStarted(w: Worker): Promise<boolean> {
  const names = await readdir(w.root).catch((): string[] => []);
  return names.some((n) => n.startsWith('.staging-'));
}

async function currentOf(w: Worker): Promise<string | null> {
  return readlink(join(w.root, 'current')).catch(() => null);
}

/** The same push again, after the kill: must be `updated` everywhere, exit 0. */
async function pushAgain(release: BuiltRelease): Promise<AdminUpdateResponse> {
  const again = await startUpdate(release).done;
  expect(again.stderr).not.toContain('EPIPE');
  expect(again.code).toBe(0);
  const res = JSON.parse(again.stdout) as AdminUpdateResponse;
  expect(res.hosts.map((h) => [h.host, h.outcome, h.version])).toEqual(
    workers.map((w) => [w.name, 'updated', release.version]),
  );
  for (const w of workers) expect(await currentOf(w)).toBe(`releases/${release.version}`);
  return res;
}

beforeAll(async () => {
  dir = await tempDir('ctl-kill');
  state = join(dir, 'controller');
  const init = await corral(['controller', 'init', '--state-dir', state, '--address', '127.0.0.1', '--json']);
  expect(init.code).toBe(0);
  controller = await serveController();
  for (const v of ['1.0.0', '2.0.0', '3.0.0', '4.0.0']) {
    // Big enough that an upload is still running when the controller is killed.
    releases[v] = await buildRelease(dir, v, 'good', { padBytes: 12 * 1024 * 1024 });
  }
  for (let i = 1; i <= 3; i++) {
    const name = `w-${i}`;
    const stateDir = join(dir, name, 'state');
    await mkdir(stateDir, { recursive: true, mode: 0o700 });
    const updaterPort = await freePort();
    const enrolled = await corral([
      'controller',
      'enroll',
      '--state-dir',
      state,
      '--name',
      name,
      '--address',
      '127.0.0.1',
      '--agent-port',
      String(await freePort()),
      '--updater-port',
      String(updaterPort),
      '--out-dir',
      join(stateDir, 'bundle'),
      '--json',
    ]);
    expect(enrolled.code).toBe(0);
    const w: Worker = { name, stateDir, root: join(dir, name, 'root'), updaterFingerprint: '' };
    workers.push(w);
    // A watch long enough that a kill lands inside it.
    updaters.push(
      await spawnUpdater(w, { listen: `127.0.0.1:${updaterPort}`, extraArgs: ['--watch', '4s'] }),
    );
  }
  const first = await startUpdate(releases['1.0.0']!).done;
  expect(first.code).toBe(0);
}, 300_000);

afterAll(async () => {
  await killController();
  await Promise.allSettled(updaters.map((u) => u.stop()));
  for (const w of workers) await killRecordedAgent(w);
  if (dir) await rm(dir, { recursive: true, force: true });
});

describe('controller killed with SIGKILL mid-update, then the same push again', () => {
  it('killed while uploading: the push again ends updated on every host', async () => {
    const release = releases['2.0.0']!;
    const pushing = startUpdate(release);
    await until(
      async () => ((await stagingStarted(workers[0]!)) ? true : undefined),
      'an upload to begin',
      60_000,
    );
    // Somewhere in the upload, not at a fixed point.
    await new Promise((r) => setTimeout(r, Math.floor(Math.random() * 300)));
    await killController();
    expect((await pushing.done).code).not.toBe(0);
    controller = await serveController();
    await pushAgain(release);
  }, 300_000);

  it('killed while a host watches the new release: the push again waits for it, then ends updated', async () => {
    const release = releases['3.0.0']!;
    const pushing = startUpdate(release);
    await until(
      async () => ((await journal(workers[0]!))?.intent?.phase === 'watching' ? true : undefined),
      'a host to be in its watch',
      120_000,
    );
    await killController();
    expect((await pushing.done).code).not.toBe(0);
    controller = await serveController();
    await pushAgain(release);
  }, 300_000);

  it('killed when every updater then finished on its own: the push again is updated (already active) everywhere', async () => {
    const release = releases['4.0.0']!;
    const pushing = startUpdate(release);
    // Every upload is through: each host is in its watch, or already done.
    await until(
      async () => {
        const all = await Promise.all(
          workers.map(async (w) => [await journal(w), await currentOf(w)] as const),
        );
        const through = all.every(
          ([s, c]) =>
            s?.intent?.phase === 'watching' || (s?.intent === null && c === `releases/${release.version}`),
        );
        return through && all.some(([s]) => s?.intent?.phase === 'watching') ? true : undefined;
      },
      'every upload to be through, a host still watching',
      120_000,
    );
    await killController();
    expect((await pushing.done).code).not.toBe(0);
    // The updaters finish without the controller.
    await until(
      async () => {
        const all = await Promise.all(
          workers.map(async (w) => [await journal(w), await currentOf(w)] as const),
        );
        return all.every(([s, c]) => s?.intent === null && c === `releases/${release.version}`)
          ? true
          : undefined;
      },
      'every updater to finish',
      60_000,
    );
    controller = await serveController();
    for (let round = 0; round < 3; round++) {
      const res = await pushAgain(release);
      expect(res.hosts.map((h) => h.reason)).toEqual(['already active', 'already active', 'already active']);
    }
  }, 300_000);
});

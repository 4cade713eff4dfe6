/**
 * Re-pushing a version a host already runs, straight to real `corral updater serve` processes
 * (no pre-check by the pusher): the updater must read the whole upload before it answers, so
 * the sender never sees its connection cut mid-body (`write EPIPE`).
 */
import { createReadStream } from 'node:fs';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { pushRelease } from '../controller/release/push.js';
import { fetchReleases, postUpdate, updaterDispatcher } from '../controller/release/updater-client.js';
import {
  buildRelease,
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
const workers: Worker[] = [];
const procs: UpdaterProcess[] = [];

beforeAll(async () => {
  fleet = await createFleet();
  dir = await tempDir('updater-repush');
  // Large enough that the updater could answer long before the body is through.
  v1 = await buildRelease(dir, '1.0.0', 'good', { padBytes: 8 * 1024 * 1024 });
  for (let i = 1; i <= 3; i++) {
    const w = await createWorker(fleet, join(dir, `w${i}`), `w-${i}`);
    workers.push(w);
    procs.push(await spawnUpdater(w));
  }
}, 120_000);

afterAll(async () => {
  for (const p of procs) await p.stop();
  for (const w of workers) await killRecordedAgent(w);
  if (dir) await rm(dir, { recursive: true, force: true });
});

/** One raw POST /v1/update with the whole file as the body, as an older controller sends it. */
async function rawPush(
  i: number,
  release = v1,
): Promise<{ outcome: string; reason: string | null } | { error: string; code?: string }> {
  const w = workers[i]!;
  const t = target(w, procs[i]!.port);
  const d = updaterDispatcher(t, fleet.controllerClient, 60_000);
  try {
    const answer = await postUpdate(d, t, {
      body: createReadStream(release.file),
      bytes: release.bytes,
      version: release.version,
      sha256: release.sha256,
      force: false,
    });
    return { outcome: answer.outcome, reason: answer.reason };
  } catch (e: unknown) {
    const code = (e as { code?: unknown }).code;
    return {
      error: e instanceof Error ? e.message : String(e),
      ...(typeof code === 'string' ? { code } : {}),
    };
  } finally {
    await d.destroy();
  }
}

describe('re-push of the active version, body sent in full', () => {
  it('answers updated (already active) ten times in a row, to three hosts at once', async () => {
    const first = await pushRelease({
      file: v1.file,
      targets: workers.map((w, i) => target(w, procs[i]!.port)),
      tls: fleet.controllerClient,
    });
    expect(first.results.map((r) => r.outcome)).toEqual(['updated', 'updated', 'updated']);
    const seen: string[] = [];
    for (let round = 0; round < 10; round++) {
      const answers = await Promise.all(workers.map((_w, i) => rawPush(i)));
      for (const a of answers) seen.push('error' in a ? `error: ${a.error}` : `${a.outcome} (${a.reason})`);
    }
    expect(seen).toEqual(Array.from({ length: 30 }, () => 'updated (already active)'));
  }, 180_000);

  it('a push that finds the updater busy gets CORRAL_ERR_UPDATER_BUSY after its whole body, not a cut connection', async () => {
    const w = await createWorker(fleet, join(dir, 'busy'), 'w-busy');
    workers.push(w);
    // Held after the new agent started, so the update stays in flight while we push again.
    const p = await spawnUpdater(w, { env: { CORRAL_TEST_UPDATER_PAUSE: 'agent-started:15000' } });
    procs.push(p);
    const i = workers.length - 1;
    const v2 = await buildRelease(dir, '2.0.0', 'good', { padBytes: 8 * 1024 * 1024 });
    const first = pushRelease({ file: v1.file, targets: [target(w, p.port)], tls: fleet.controllerClient });
    await until(
      async () => ((await fetchReleases(target(w, p.port), fleet.controllerClient)).busy ? true : undefined),
      'the first update to be in flight',
    );
    const second = await rawPush(i, v2);
    expect(second).toMatchObject({ code: 'CORRAL_ERR_UPDATER_BUSY' });
    expect((await first).results[0]).toMatchObject({ outcome: 'updated', current: '1.0.0' });
  }, 120_000);
});

import { execFile } from 'node:child_process';
import { readdir, rm, truncate, unlink, writeFile } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterEach, describe, expect, it } from 'vitest';
import {
  appendLines,
  appendSlowly,
  exactlyOnceProblem,
  killHard,
  makePki,
  rotate,
  sequencesIn,
  spawnForwarder,
  startListener,
  tempDir,
  TestPinTable,
  waitFor,
  waitForLines,
  workerStateDir,
  writeLines,
  type Cleanups,
} from './logs-fixtures.js';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const cleanups: Cleanups = [];
afterEach(async () => {
  while (cleanups.length > 0) await cleanups.pop()?.();
});

async function setup() {
  const pki = await makePki();
  const pins = new TestPinTable();
  const host = await pki.host('web-1');
  pins.pin(host);
  const dir = await tempDir('logs-positions');
  cleanups.push(() => rm(dir, { recursive: true, force: true }));
  const logDir = join(dir, 'ingest');
  const { listener, port } = await startListener(pki, pins, logDir);
  cleanups.push(() => listener.close());
  const stateDir = await workerStateDir(pki, host, port);
  cleanups.push(() => rm(stateDir, { recursive: true, force: true }));
  const file = join(stateDir, 'logs', 'app.log');
  const db = join(stateDir, 'forwarder', 'positions.db');
  return { pki, pins, host, dir, listener, stateDir, file, db, ingest: join(logDir, 'web-1.log') };
}

/**
 * Ships lines 0..6000 with `corral forwarder run`, kill -9 mid-stream (while lines are still
 * being written and acked), then does `damage` to the stopped forwarder's positions.
 */
async function shipAndKill(s: Awaited<ReturnType<typeof setup>>, damage: () => Promise<void>): Promise<void> {
  await writeLines(s.file, 0, 2000);
  const writing = appendSlowly(s.file, 2000, 6000, { perStep: 100, stepMs: 3 });
  const forwarder = spawnForwarder(cleanups, s.stateDir, [s.file]);
  await waitFor('3000 lines', async () => (await sequencesIn(s.ingest)).length >= 3000);
  await killHard(forwarder);
  await writing;
  await damage();
}

/** Restarts the forwarder and checks every line 0..total-1 arrives once, in order. */
async function restartAndCheck(s: Awaited<ReturnType<typeof setup>>, total: number): Promise<string> {
  const forwarder = spawnForwarder(cleanups, s.stateDir, [s.file]);
  await waitForLines(s.ingest, total);
  // More lines after: a file shipped again would show up before them, as repeated numbers.
  await appendLines(s.file, total, total + 100);
  const after = await waitForLines(s.ingest, total + 100);
  expect(exactlyOnceProblem(after, total + 100)).toBeUndefined();
  const output = forwarder.output();
  await killHard(forwarder);
  return output;
}

describe('a lost positions database (corral forwarder run, kill -9, then the damage)', () => {
  it('zero-length: detected, said loudly with the file named, resumed from the listener', async () => {
    const s = await setup();
    await shipAndKill(s, () => truncate(s.db, 0));
    const output = await restartAndCheck(s, 6000);
    expect(output).toContain('positions database lost');
    expect(output).toContain(s.db);
    expect(output).toContain('"reason":"empty"');
    // The empty file was put aside, not deleted, and a new database carries on.
    expect(
      (await readdir(join(s.stateDir, 'forwarder'))).some((n) => n.startsWith('positions.db.empty-')),
    ).toBe(true);
  });

  it('deleted, with two rotations while the forwarder was down: nothing lost, nothing twice', async () => {
    const s = await setup();
    await shipAndKill(s, async () => {
      await unlink(s.db);
      await rotate(s.file, 6200, 6400, { from: 6000, to: 6200 });
      await rotate(s.file, 6400, 6600);
    });
    const output = await restartAndCheck(s, 6600);
    expect(output).toContain('positions database lost');
    expect(output).toContain('"reason":"missing"');
  });

  it('not a database at all: the error names the file, which is put aside; resumed from the listener', async () => {
    const s = await setup();
    await shipAndKill(s, async () => {
      await rm(`${s.db}-wal`, { force: true });
      await rm(`${s.db}-shm`, { force: true });
      await writeFile(s.db, 'this is not a database\n'.repeat(300));
      await rotate(s.file, 6000, 6300);
    });
    const output = await restartAndCheck(s, 6300);
    expect(output).toContain('"reason":"damaged"');
    expect(output).toContain(s.db);
    expect(output).toMatch(/file is not a database/);
    expect(
      (await readdir(join(s.stateDir, 'forwarder'))).some((n) => n.startsWith('positions.db.damaged-')),
    ).toBe(true);
  });

  it('deleted together with its marker: the listener still knows the file, so nothing is shipped twice', async () => {
    const s = await setup();
    await shipAndKill(s, async () => {
      await rm(join(s.stateDir, 'forwarder'), { recursive: true, force: true });
    });
    const output = await restartAndCheck(s, 6000);
    expect(output).toContain('the listener knows these files');
  });

  it('refuses (exit 1, CORRAL_ERR_POSITIONS_LOST, both files named) when the listener cannot tell', async () => {
    const s = await setup();
    await shipAndKill(s, () => unlink(s.db));
    // Another listener, with no state: it has never seen these files.
    const other = await startListener(s.pki, s.pins, join(s.dir, 'other-ingest'));
    cleanups.push(() => other.listener.close());
    const forwarder = spawnForwarder(
      cleanups,
      s.stateDir,
      [s.file],
      ['--controller', `127.0.0.1:${other.port}`],
    );
    const { code } = await forwarder.exited();
    expect(code).toBe(1);
    expect(forwarder.output()).toContain('CORRAL_ERR_POSITIONS_LOST');
    expect(forwarder.output()).toContain(s.db);
    expect(forwarder.output()).toContain(`${s.db}.marker`);
    expect(await sequencesIn(join(s.dir, 'other-ingest', 'web-1.log'))).toEqual([]);
  });

  it('in rfc5425 mode (no listener positions) refuses at once rather than ship everything again', async () => {
    const s = await setup();
    await writeLines(s.file, 0, 1000);
    const first = spawnForwarder(cleanups, s.stateDir, [s.file], ['--mode', 'rfc5425']);
    await waitForLines(s.ingest, 1000);
    await killHard(first);
    await unlink(s.db);
    const again = spawnForwarder(cleanups, s.stateDir, [s.file], ['--mode', 'rfc5425']);
    const { code } = await again.exited();
    expect(code).toBe(1);
    expect(again.output()).toContain('CORRAL_ERR_POSITIONS_LOST');
    expect(again.output()).toContain(s.db);
    expect((await sequencesIn(s.ingest)).length).toBe(1000);
  });
});

describe('corral forwarder status', () => {
  it('shows a generation that vanished before it was read: counted in the positions, with the rest in order', async () => {
    const s = await setup();
    await writeLines(s.file, 0, 1000);
    const first = spawnForwarder(cleanups, s.stateDir, [s.file]);
    await waitForLines(s.ingest, 1000);
    await killHard(first);
    await appendLines(s.file, 1000, 1100);
    await rotate(s.file, 1100, 1300);
    await unlink(`${s.file}.1`); // the generation it was reading, with 100 lines it never read
    const second = spawnForwarder(cleanups, s.stateDir, [s.file]);
    const seqs = await waitForLines(s.ingest, 1200);
    expect(seqs).toEqual([...Array(1000).keys(), ...Array.from({ length: 200 }, (_, i) => 1100 + i)]);
    expect(second.output()).toContain('a log file generation vanished before it was read');
    const run = promisify(execFile);
    const cli = [join(ROOT, 'bin', 'corral.js'), 'forwarder', 'status', '--state-dir', s.stateDir];
    const json = JSON.parse((await run(process.execPath, [...cli, '--json'])).stdout) as Record<
      string,
      unknown
    >;
    expect(json).toMatchObject({ file: s.db, database: 'present', marker: 'ok', lostGenerations: 1 });
    const table = (await run(process.execPath, cli)).stdout;
    expect(table).toContain('1 generations vanished before they were read');
    expect(table).toMatch(new RegExp(`${s.file} +reading`));
  });
});

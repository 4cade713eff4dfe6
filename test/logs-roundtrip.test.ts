import { copyFile, readFile, rename, rm, stat, truncate, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import pino from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import {
  createForwarder,
  openPositionStore,
  type Forwarder,
  type ForwarderMode,
  type PositionStore,
} from '../forwarder/index.js';
import {
  appendLines,
  appendSlowly,
  sequencesIn,
  exactlyOnceProblem,
  makePki,
  startListener,
  tempDir,
  TestPinTable,
  waitFor,
  waitForLines,
  writeLines,
  type HostIdentity,
  type TestPki,
} from './logs-fixtures.js';

const silent = pino({ level: process.env.LOGS_TEST_LOG ?? 'silent' }, pino.destination(2));
const cleanups: (() => Promise<void>)[] = [];

afterEach(async () => {
  while (cleanups.length > 0) await cleanups.pop()?.();
});

interface Running {
  readonly forwarder: Forwarder;
  readonly store: PositionStore;
  stop(): Promise<void>;
}

async function runForwarder(
  host: HostIdentity,
  port: number,
  files: string[],
  dbPath: string,
  mode: ForwarderMode = 'corral',
): Promise<Running> {
  const store = await openPositionStore(dbPath);
  const forwarder = createForwarder({
    tls: host,
    controller: { host: '127.0.0.1', port },
    files,
    mode,
    store,
    log: silent,
    pollIntervalMs: 20,
    rotateGraceMs: 100,
    backoffBaseMs: 20,
    backoffCapMs: 200,
    windowBytes: 512 * 1024,
  });
  const ac = new AbortController();
  const done = forwarder.run(ac.signal);
  let stopped: Promise<void> | undefined;
  const stop = (): Promise<void> =>
    (stopped ??= (async () => {
      ac.abort();
      await done;
      await forwarder.close();
      await store.close();
    })());
  cleanups.push(stop);
  return { forwarder, store, stop };
}

async function setup(): Promise<{ pki: TestPki; pins: TestPinTable; host: HostIdentity; dir: string }> {
  const pki = await makePki();
  const pins = new TestPinTable();
  const host = await pki.host('web-1');
  pins.pin(host);
  const dir = await tempDir('logs');
  cleanups.push(() => rm(dir, { recursive: true, force: true }));
  return { pki, pins, host, dir };
}

describe('log forwarder to Corral listener (corral mode, exactly once)', () => {
  it('ships many lines, each exactly once and in order, to the host named by the pin', async () => {
    const { pki, pins, host, dir } = await setup();
    const { listener, port } = await startListener(pki, pins, join(dir, 'ingest'));
    cleanups.push(() => listener.close());
    const file = join(dir, 'app.log');
    await writeLines(file, 0, 20_000);
    await runForwarder(host, port, [file], join(dir, 'positions.db'));
    const seqs = await waitForLines(join(dir, 'ingest', 'web-1.log'), 20_000);
    expect(exactlyOnceProblem(seqs, 20_000)).toBeUndefined();
    await waitFor('every line committed', () => listener.stats().linesIngested === 20_000);
  });

  it('resumes from the offset it persisted, even against a listener that has never seen it', async () => {
    const { pki, pins, host, dir } = await setup();
    const file = join(dir, 'app.log');
    const db = join(dir, 'positions.db');
    await writeLines(file, 0, 5000);
    const first = await startListener(pki, pins, join(dir, 'ingest-1'));
    cleanups.push(() => first.listener.close());
    const run1 = await runForwarder(host, first.port, [file], db);
    await waitForLines(join(dir, 'ingest-1', 'web-1.log'), 5000);
    const size = (await stat(file)).size;
    await waitFor('every line acknowledged', () => run1.forwarder.stats().files[0]?.acked === size);
    await run1.stop();

    const reopened = await openPositionStore(db);
    const saved = (await reopened.generations(file)).find((g) => g.state === 'reading');
    await reopened.close();
    expect(saved?.offset).toBe(size);

    await appendLines(file, 5000, 8000);
    const second = await startListener(pki, pins, join(dir, 'ingest-2'));
    cleanups.push(() => second.listener.close());
    await runForwarder(host, second.port, [file], db);
    const seqs = await waitForLines(join(dir, 'ingest-2', 'web-1.log'), 3000);
    expect(exactlyOnceProblem(seqs, 3000, 5000)).toBeUndefined();
  });

  it('follows rename-and-create rotation, while running and while stopped, losing nothing', async () => {
    const { pki, pins, host, dir } = await setup();
    const { listener, port } = await startListener(pki, pins, join(dir, 'ingest'));
    cleanups.push(() => listener.close());
    const file = join(dir, 'app.log');
    const db = join(dir, 'positions.db');
    const ingest = join(dir, 'ingest', 'web-1.log');
    await writeLines(file, 0, 2000);
    const run1 = await runForwarder(host, port, [file], db);
    await appendSlowly(file, 2000, 3000);
    // logrotate's default: rename, then create; the service still writes to the old file
    // until it reopens its log.
    await rename(file, `${file}.1`);
    await appendLines(`${file}.1`, 3000, 3500);
    await writeFile(file, '');
    await appendSlowly(file, 3500, 5000);
    await waitForLines(ingest, 5000);
    await run1.stop();

    // Rotated again while the forwarder is down, with lines it never read on both sides.
    await appendLines(file, 5000, 6000);
    await rename(`${file}.1`, `${file}.2`);
    await rename(file, `${file}.1`);
    await writeLines(file, 6000, 7000);
    await runForwarder(host, port, [file], db);
    const seqs = await waitForLines(ingest, 7000);
    expect(exactlyOnceProblem(seqs, 7000)).toBeUndefined();
  });

  it('follows copytruncate rotation, reading unread lines from the copy', async () => {
    const { pki, pins, host, dir } = await setup();
    const { listener, port } = await startListener(pki, pins, join(dir, 'ingest'));
    cleanups.push(() => listener.close());
    const file = join(dir, 'app.log');
    const db = join(dir, 'positions.db');
    const ingest = join(dir, 'ingest', 'web-1.log');
    await writeLines(file, 0, 2000);
    const run1 = await runForwarder(host, port, [file], db);
    await appendSlowly(file, 2000, 3000);
    await appendLines(file, 3000, 4000);
    await copyFile(file, `${file}.1`);
    await truncate(file, 0);
    await appendSlowly(file, 4000, 5000);
    await waitForLines(ingest, 5000);
    await run1.stop();

    // copytruncate while the forwarder is down: lines 5000..6000 are only in the copy.
    await appendLines(file, 5000, 6000);
    await copyFile(file, `${file}.1`);
    await truncate(file, 0);
    await appendLines(file, 6000, 7000);
    await runForwarder(host, port, [file], db);
    const seqs = await waitForLines(ingest, 7000);
    expect(exactlyOnceProblem(seqs, 7000)).toBeUndefined();
  });

  it('survives a listener restart mid-stream without loss or duplicates', async () => {
    const { pki, pins, host, dir } = await setup();
    const logDir = join(dir, 'ingest');
    const ingest = join(logDir, 'web-1.log');
    const first = await startListener(pki, pins, logDir);
    const file = join(dir, 'app.log');
    await writeLines(file, 0, 1000);
    await runForwarder(host, first.port, [file], join(dir, 'positions.db'));
    const writing = appendSlowly(file, 1000, 20_000, { perStep: 100, stepMs: 2 });
    await waitFor('some lines ingested', async () => (await sequencesIn(ingest)).length > 3000);
    await first.listener.close();
    const second = await startListener(pki, pins, logDir, { port: first.port });
    cleanups.push(() => second.listener.close());
    await writing;
    const seqs = await waitForLines(ingest, 20_000);
    expect(exactlyOnceProblem(seqs, 20_000)).toBeUndefined();
  });

  it('rides out a long outage by reading from the file when the listener is back', async () => {
    const { pki, pins, host, dir } = await setup();
    const logDir = join(dir, 'ingest');
    const ingest = join(logDir, 'web-1.log');
    const first = await startListener(pki, pins, logDir);
    const file = join(dir, 'app.log');
    await writeLines(file, 0, 1000);
    const run = await runForwarder(host, first.port, [file], join(dir, 'positions.db'));
    await waitForLines(ingest, 1000);
    await first.listener.close();
    await appendLines(file, 1000, 30_000);
    const failuresBefore = run.forwarder.stats().connectFailures;
    await waitFor(
      'several failed reconnects',
      () => run.forwarder.stats().connectFailures >= failuresBefore + 3,
    );
    const second = await startListener(pki, pins, logDir, { port: first.port });
    cleanups.push(() => second.listener.close());
    const seqs = await waitForLines(ingest, 30_000);
    expect(exactlyOnceProblem(seqs, 30_000)).toBeUndefined();
  });

  it('ships lines longer than a frame in pieces and skips empty lines', async () => {
    const { pki, pins, host, dir } = await setup();
    const { listener, port } = await startListener(pki, pins, join(dir, 'ingest'));
    cleanups.push(() => listener.close());
    const file = join(dir, 'app.log');
    const long = 'y'.repeat(150_000);
    await writeFile(file, `first line\n\n${long}\nlast line\n`);
    await runForwarder(host, port, [file], join(dir, 'positions.db'));
    const ingest = join(dir, 'ingest', 'web-1.log');
    let text = '';
    await waitFor('the last line', async () => {
      text = await readFile(ingest, 'utf8').catch(() => '');
      return text.endsWith('last line\n');
    });
    const lines = text.split('\n');
    expect(lines[0]).toBe('first line');
    expect(lines.slice(1, -2).join('')).toBe(long);
    expect(lines.slice(1, -2).every((l) => l.length <= 65_536)).toBe(true);
  });
});

import { copyFile, rm, truncate, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterEach, describe, expect, it } from 'vitest';
import {
  createForwarder,
  openPositionStore,
  type Forwarder,
  type PositionStore,
} from '../forwarder/index.js';
import {
  appendLines,
  captureLog,
  exactlyOnceProblem,
  makePki,
  rotate,
  seededRandom,
  sequencesIn,
  startListener,
  tempDir,
  TestPinTable,
  waitFor,
  waitForLines,
  writeLines,
  type CapturedLog,
  type Cleanups,
  type HostIdentity,
} from './logs-fixtures.js';

const cleanups: Cleanups = [];
const VANISHED = 'a log file generation vanished before it was read: its lines are lost';
const range = (from: number, to: number): number[] => Array.from({ length: to - from }, (_, i) => from + i);
afterEach(async () => {
  while (cleanups.length > 0) await cleanups.pop()?.();
});

interface Running {
  readonly forwarder: Forwarder;
  readonly store: PositionStore;
  readonly logs: CapturedLog;
  stop(): Promise<void>;
}

/** A forwarder with the shipped defaults (1 s rotate grace), polling every 20 ms. */
async function runForwarder(host: HostIdentity, port: number, file: string, db: string): Promise<Running> {
  const store = await openPositionStore(db);
  const logs = captureLog('warn');
  const forwarder = createForwarder({
    tls: host,
    controller: { host: '127.0.0.1', port },
    files: [file],
    mode: 'corral',
    store,
    log: logs.log,
    pollIntervalMs: 20,
    backoffBaseMs: 20,
    backoffCapMs: 200,
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
  return { forwarder, store, logs, stop };
}

async function setup() {
  const pki = await makePki();
  const pins = new TestPinTable();
  const host = await pki.host('web-1');
  pins.pin(host);
  const dir = await tempDir('logs-rotation');
  cleanups.push(() => rm(dir, { recursive: true, force: true }));
  const logDir = join(dir, 'ingest');
  const { listener, port } = await startListener(pki, pins, logDir);
  cleanups.push(() => listener.close());
  return {
    pki,
    pins,
    host,
    dir,
    logDir,
    listener,
    port,
    file: join(dir, 'app.log'),
    db: join(dir, 'positions.db'),
    ingest: join(logDir, 'web-1.log'),
  };
}

describe('rename-and-create rotation: every generation, in order, once', () => {
  it('two, three and four rotations while the forwarder is down, stopped mid-file each time', async () => {
    const s = await setup();
    await writeLines(s.file, 0, 500);
    let next = 500;
    for (const rotations of [2, 3, 4]) {
      const run = await runForwarder(s.host, s.port, s.file, s.db);
      // Stop it while it still has lines of the current file to read.
      await appendLines(s.file, next, next + 3000);
      next += 3000;
      await waitFor(
        'part of the file shipped',
        async () => (await sequencesIn(s.ingest)).length >= next - 2500,
      );
      await run.stop();
      for (let r = 0; r < rotations; r++) {
        // The service writes on to the renamed file for a moment, then to the new one.
        await rotate(s.file, next + 50, next + 250, { from: next, to: next + 50 });
        next += 250;
      }
      await appendLines(s.file, next, next + 100);
      next += 100;
    }
    await runForwarder(s.host, s.port, s.file, s.db);
    const seqs = await waitForLines(s.ingest, next);
    expect(exactlyOnceProblem(seqs, next)).toBeUndefined();
  });

  it('rotations 150-400 ms apart while it runs (the 1 s drain grace is no limit)', async () => {
    const s = await setup();
    const seed = Date.now() % 1_000_000;
    const random = seededRandom(seed);
    await writeLines(s.file, 0, 100);
    const run = await runForwarder(s.host, s.port, s.file, s.db);
    let next = 100;
    for (let r = 0; r < 12; r++) {
      const lifeMs = 150 + random() * 250;
      const until = Date.now() + lifeMs;
      while (Date.now() < until) {
        await appendLines(s.file, next, next + 20);
        next += 20;
        await sleep(10);
      }
      await rotate(s.file, next + 10, next + 30, { from: next, to: next + 10 });
      next += 30;
    }
    const seqs = await waitForLines(s.ingest, next);
    expect(exactlyOnceProblem(seqs, next), `seed ${seed}`).toBeUndefined();
    expect(run.logs.entries.filter((e) => String(e.msg).includes('vanished'))).toEqual([]);
  });

  it('rotations while the listener is unreachable, with the pending files deleted before it is back', async () => {
    const s = await setup();
    await writeLines(s.file, 0, 1000);
    const run = await runForwarder(s.host, s.port, s.file, s.db);
    await waitForLines(s.ingest, 1000);
    await s.listener.close();
    let next = 1000;
    for (let r = 0; r < 3; r++) {
      await rotate(s.file, next, next + 300);
      next += 300;
    }
    // The forwarder looks at its files between reconnect attempts and keeps them open ...
    const failures = run.forwarder.stats().connectFailures;
    await waitFor('two more failed reconnects', () => run.forwarder.stats().connectFailures >= failures + 2);
    // ... so logrotate deleting the old ones (rotate 1) takes nothing.
    await unlink(`${s.file}.3`);
    await unlink(`${s.file}.2`);
    const back = await startListener(s.pki, s.pins, s.logDir, { port: s.port });
    cleanups.push(() => back.listener.close());
    const seqs = await waitForLines(s.ingest, next);
    expect(exactlyOnceProblem(seqs, next)).toBeUndefined();
  });

  it('the generation being read, rotated and deleted while the forwarder is down: warned, counted, told', async () => {
    const s = await setup();
    await writeLines(s.file, 0, 1000);
    const first = await runForwarder(s.host, s.port, s.file, s.db);
    await waitForLines(s.ingest, 1000);
    await first.stop();
    await appendLines(s.file, 1000, 1100); // never read: deleted below
    await rotate(s.file, 1100, 1300);
    await unlink(`${s.file}.1`);
    const second = await runForwarder(s.host, s.port, s.file, s.db);
    const seqs = await waitForLines(s.ingest, 1200);
    expect(seqs).toEqual([...range(0, 1000), ...range(1100, 1300)]);
    const warnings = second.logs.entries.filter((e) => e.msg === VANISHED);
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toMatchObject({ file: s.file, lostGenerations: 1 });
    expect(await second.store.counters()).toMatchObject({ lostGenerations: 1 });
    expect(second.forwarder.stats().generationsLost).toBe(1);
    await waitFor('the listener told', () => s.listener.stats().generationsLost === 1);
  });

  it('a generation found during an outage and deleted before its turn: warned with its unread bytes; the rest in order', async () => {
    const s = await setup();
    await writeLines(s.file, 0, 1000);
    const first = await runForwarder(s.host, s.port, s.file, s.db);
    await waitForLines(s.ingest, 1000);
    await s.listener.close();
    await rotate(s.file, 1000, 1200); // B: 1000..1199
    await rotate(s.file, 1200, 1400); // C: 1200..1399; B is app.log.1
    const failures = first.forwarder.stats().connectFailures;
    await waitFor(
      'two more failed reconnects',
      () => first.forwarder.stats().connectFailures >= failures + 2,
    );
    await first.stop(); // B and C are recorded as pending; their files are no longer held
    await unlink(`${s.file}.1`);
    const back = await startListener(s.pki, s.pins, s.logDir, { port: s.port });
    cleanups.push(() => back.listener.close());
    const second = await runForwarder(s.host, s.port, s.file, s.db);
    const seqs = await waitForLines(s.ingest, 1200);
    expect(seqs).toEqual([...range(0, 1000), ...range(1200, 1400)]);
    const warnings = second.logs.entries.filter((e) => e.msg === VANISHED);
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toMatchObject({ unreadBytes: 200 * 201, lostGenerations: 1 });
    await waitFor('the listener told', () => back.listener.stats().generationsLost === 1);
    expect(back.listener.stats().bytesLost).toBe(200 * 201);
  });

  it('copytruncate twice while the forwarder is down: the middle copy is found and shipped', async () => {
    const s = await setup();
    await writeLines(s.file, 0, 1000);
    const first = await runForwarder(s.host, s.port, s.file, s.db);
    await waitForLines(s.ingest, 1000);
    await first.stop();
    await appendLines(s.file, 1000, 1500);
    await copyFile(s.file, `${s.file}.1`);
    await truncate(s.file, 0);
    await appendLines(s.file, 1500, 2000);
    await copyFile(`${s.file}.1`, `${s.file}.2`);
    await copyFile(s.file, `${s.file}.1`);
    await truncate(s.file, 0);
    await appendLines(s.file, 2000, 2500);
    await runForwarder(s.host, s.port, s.file, s.db);
    const seqs = await waitForLines(s.ingest, 2500);
    expect(exactlyOnceProblem(seqs, 2500)).toBeUndefined();
  });
});

import { mkdtemp, readFile, readdir, rename, rm, truncate, unlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import type { HostWriter } from './host-writer.js';
import { JOURNAL_FILES, zeroCounters } from './ingest-recovery.js';
import { openIngestStore, type IngestStore, type IngestStoreOptions } from './ingest-store.js';

const dirs: string[] = [];
afterEach(async () => {
  while (dirs.length > 0) await rm(dirs.pop() as string, { recursive: true, force: true });
});

async function logDir(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'corral-ingest-store-'));
  dirs.push(dir);
  return join(dir, 'logs');
}

function open(dir: string, extra: Partial<IngestStoreOptions> = {}) {
  const counters = zeroCounters();
  const ready = openIngestStore({
    logDir: dir,
    log: pino({ level: 'silent' }),
    clock: Date.now,
    counters,
    ...extra,
  });
  return { counters, ready };
}

const streamOf = (i: number): string => i.toString(16).padStart(32, '0');
const hostOf = (i: number): string => `host-${i}`;
const lineOf = (host: string, n: number): Buffer => Buffer.from(`<134>1 - ${host} app - - - line ${n}\n`);

/** Queues one item; resolves when it settles (rejects with its error). */
function append(
  writer: HostWriter,
  data: Buffer | undefined,
  stream: { id: string; position: number },
): Promise<void> {
  return new Promise((resolve, reject) =>
    writer.append({
      ...(data ? { data: [data] } : {}),
      stream,
      settle: (error) => (error ? reject(error) : resolve()),
    }),
  );
}

async function acquireAll(store: IngestStore, count: number): Promise<HostWriter[]> {
  const out: HostWriter[] = [];
  for (let i = 0; i < count; i++) out.push(await store.acquire(hostOf(i)));
  return out;
}

describe('ingest store: group commits across hosts', () => {
  it('batches of 50 hosts queued together are made durable by one fdatasync, and acknowledged after it', async () => {
    const dir = await logDir();
    const { counters, ready } = open(dir);
    const store = await ready;
    const writers = await acquireAll(store, 50);
    const before = { ...counters };
    const settled = await Promise.allSettled(
      writers.map((w, i) => append(w, lineOf(w.hostId, 0), { id: streamOf(i), position: 100 })),
    );
    expect(settled.every((s) => s.status === 'fulfilled')).toBe(true);
    expect(counters.commits - before.commits).toBe(1);
    expect(counters.fdatasyncs - before.fdatasyncs).toBe(1);
    for (const [i, w] of writers.entries()) {
      expect(w.committedPosition(streamOf(i))).toBe(100);
      expect(await readFile(join(dir, `${w.hostId}.log`), 'utf8')).toBe(lineOf(w.hostId, 0).toString());
    }
    for (const w of writers) w.release();
    await store.close();
  });

  it('one host alone commits through its own file and state, not a second copy in the journal', async () => {
    const dir = await logDir();
    const { counters, ready } = open(dir);
    const store = await ready;
    const [w] = await acquireAll(store, 1);
    const writer = w as HostWriter;
    const before = { ...counters };
    await append(writer, lineOf('host-0', 0), { id: streamOf(0), position: 10 });
    expect(counters.commits - before.commits).toBe(1);
    expect(counters.fdatasyncs - before.fdatasyncs).toBe(2);
    expect((await readFile(join(dir, JOURNAL_FILES[0]))).length).toBe(16);
    writer.release();
    await store.close();
  });

  it('a busy host does not crowd out others: each takes its turn within a group', async () => {
    const dir = await logDir();
    const { ready } = open(dir, { maxGroupBytes: 1024 * 1024 });
    const store = await ready;
    const writers = await acquireAll(store, 21);
    const [busy, ...quiet] = writers as [HostWriter, ...HostWriter[]];
    const order: string[] = [];
    const chunk = Buffer.alloc(256 * 1024, 0x61);
    chunk[chunk.length - 1] = 0x0a;
    const all = [
      ...Array.from({ length: 20 }, (_, n) =>
        append(busy, chunk, { id: streamOf(0), position: (n + 1) * chunk.length }).then(() =>
          order.push(`busy-${n}`),
        ),
      ),
      ...quiet.map((w, i) =>
        append(w, lineOf(w.hostId, 0), { id: streamOf(i + 1), position: 50 }).then(() =>
          order.push(w.hostId),
        ),
      ),
    ];
    await Promise.all(all);
    // 20 quiet hosts and 20 busy batches of 256 KiB in 1 MiB groups: the quiet ones all come
    // in the first group beside a share of the busy one, not after its 20 batches.
    const lastQuiet = Math.max(...quiet.map((w) => order.indexOf(w.hostId)));
    expect(lastQuiet).toBeLessThan(order.indexOf('busy-4'));
    for (const w of writers) w.release();
    await store.close();
  });

  it("a host that just connected gets its answer in the next commit, not after every busy host's turn", async () => {
    const dir = await logDir();
    const { counters, ready } = open(dir, { maxGroupBytes: 1024 * 1024 });
    const store = await ready;
    const writers = await acquireAll(store, 9);
    const busy = writers.slice(0, 8);
    const late = writers[8] as HostWriter;
    const chunk = Buffer.alloc(256 * 1024, 0x61);
    chunk[chunk.length - 1] = 0x0a;
    const before = counters.commits;
    // 8 hosts × 4 batches of 256 KiB in 1 MiB groups: 8 commits of lines are queued.
    const all: Promise<unknown>[] = busy.flatMap((w, i) =>
      Array.from({ length: 4 }, (_, n) =>
        append(w, chunk, { id: streamOf(i), position: (n + 1) * chunk.length }),
      ),
    );
    // Then a new connection's `open` (an item without lines, recording the stream's key), and its first batch.
    let openedIn = 0;
    let firstBatchIn = 0;
    late.append({
      stream: { id: streamOf(8), position: 0, key: 'k'.repeat(16) },
      settle: (error) => {
        if (!error) openedIn = counters.commits - before;
      },
    });
    all.push(
      append(late, chunk, { id: streamOf(8), position: chunk.length }).then(
        () => (firstBatchIn = counters.commits - before),
      ),
    );
    await Promise.all(all);
    expect(openedIn).toBe(1);
    // Its lines still take their turn in line: within the first three commits, not after all 8.
    expect(firstBatchIn).toBeGreaterThan(1);
    expect(firstBatchIn).toBeLessThanOrEqual(3);
    expect(late.findByKey('k'.repeat(16))).toEqual({ streamId: streamOf(8), position: chunk.length });
    for (const w of writers) w.release();
    await store.close();
  });

  it('commits that are only in the journal are replayed into the host files on the next open', async () => {
    const dir = await logDir();
    const first = await open(dir).ready;
    const writers = await acquireAll(first, 5);
    await Promise.all(
      writers.map((w, i) => append(w, lineOf(w.hostId, 0), { id: streamOf(i), position: 40 })),
    );
    await Promise.all(
      writers.map((w, i) => append(w, lineOf(w.hostId, 1), { id: streamOf(i), position: 80 })),
    );
    // What a power cut after the journal's fdatasync can leave: host files without their last
    // lines (or gone), states from before. `first` is never closed, as after a crash.
    await truncate(join(dir, `${hostOf(0)}.log`), 0);
    await unlink(join(dir, `${hostOf(1)}.log`));
    const { counters, ready } = open(dir);
    const second = await ready;
    expect(counters.fdatasyncs).toBeGreaterThan(0);
    const again = await acquireAll(second, 5);
    for (const [i, w] of again.entries()) {
      expect(await readFile(join(dir, `${w.hostId}.log`), 'utf8')).toBe(
        `${lineOf(w.hostId, 0).toString()}${lineOf(w.hostId, 1).toString()}`,
      );
      expect(w.committedPosition(streamOf(i))).toBe(80);
    }
    for (const w of again) w.release();
    await second.close();
    expect((await readdir(dir)).filter((n) => n.includes('damaged'))).toEqual([]);
  });

  it('switches journal files and checkpoints while commits go on; positions survive a reopen', async () => {
    const dir = await logDir();
    const { counters, ready } = open(dir, { journalBytes: 4096 });
    const store = await ready;
    const writers = await acquireAll(store, 8);
    for (let n = 0; n < 40; n++) {
      await Promise.all(
        writers.map((w, i) => append(w, lineOf(w.hostId, n), { id: streamOf(i), position: (n + 1) * 10 })),
      );
    }
    expect(counters.checkpoints).toBeGreaterThan(3);
    for (const w of writers) w.release();
    await store.close();
    const reopened = await open(dir).ready;
    const again = await acquireAll(reopened, 8);
    for (const [i, w] of again.entries()) {
      expect(w.committedPosition(streamOf(i))).toBe(400);
      const text = await readFile(join(dir, `${w.hostId}.log`), 'utf8');
      expect(text).toBe(Array.from({ length: 40 }, (_, n) => lineOf(w.hostId, n).toString()).join(''));
    }
    for (const w of again) w.release();
    await reopened.close();
  });
});

describe('ingest store: a damaged journal', () => {
  it('a record damaged with intact records after it: nothing is cut off, and the file is put aside', async () => {
    const dir = await logDir();
    const first = await open(dir).ready;
    const writers = await acquireAll(first, 3);
    for (let n = 0; n < 3; n++) {
      await Promise.all(
        writers.map((w, i) => append(w, lineOf(w.hostId, n), { id: streamOf(i), position: 40 * (n + 1) })),
      );
    }
    const journal = join(dir, JOURNAL_FILES[0]);
    const fh = await (await import('node:fs/promises')).open(journal, 'r+');
    const head = Buffer.alloc(24);
    await fh.read(head, 0, 24, 16);
    const firstLength = 24 + head.readUInt32BE(8) + head.readUInt32BE(12);
    await fh.write(Buffer.from('X'), 0, 1, 16 + firstLength - 3);
    await fh.close();
    for (let i = 0; i < 3; i++) await truncate(join(dir, `${hostOf(i)}.log`), 0);
    const second = await open(dir).ready;
    const again = await acquireAll(second, 3);
    for (const w of again) w.release();
    await second.close();
    expect((await readdir(dir)).filter((n) => n.includes('damaged'))).toHaveLength(1);
  });
});

describe('ingest store: rotation', () => {
  it('rotates a named host between commits, and finishes a rotation a crash cut short after the rename (with or without the next file created)', async () => {
    const dir = await logDir();
    const stream = streamOf(1);
    let n = 0;
    /** Opens the store, commits `count` lines one item at a time, closes it. */
    const session = async (count: number): Promise<void> => {
      const store = await open(dir, { maxFileBytes: 200 }).ready;
      const w = await store.acquire('h-1', 'web');
      for (let i = 0; i < count; i++, n++)
        await append(w, lineOf('web', n), { id: stream, position: (n + 1) * 10 });
      w.release();
      await store.close();
    };
    const everything = async (): Promise<string> => {
      const names = (await readdir(dir)).filter((x) => x.startsWith('web.h-1.')).sort();
      // Generations sort before the current file (digits before `l`).
      return (await Promise.all(names.map((x) => readFile(join(dir, x), 'utf8')))).join('');
    };
    const expected = (): string => Array.from({ length: n }, (_, i) => lineOf('web', i).toString()).join('');

    await session(24);
    const rotated = (await readdir(dir)).filter((x) => /^web\.h-1\.\d{6}\.log$/.test(x));
    expect(rotated.length).toBeGreaterThanOrEqual(2);
    expect(await everything()).toBe(expected());

    for (const alsoCreated of [false, true]) {
      // A crash right after rotate renamed the current file: the state still names it.
      await session(2);
      const gens = (await readdir(dir)).filter((x) => /^web\.h-1\.\d{6}\.log$/.test(x)).sort();
      const next = String(gens.length).padStart(6, '0');
      await rename(join(dir, 'web.h-1.log'), join(dir, `web.h-1.${next}.log`));
      if (alsoCreated) await writeFile(join(dir, 'web.h-1.log'), '');
      await session(1);
      expect(await everything(), `alsoCreated ${alsoCreated}`).toBe(expected());
      expect(await readFile(join(dir, 'web.h-1.log'), 'utf8')).toBe(lineOf('web', n - 1).toString());
    }
    // Rotations go on from there: generations numbered without a gap, no line twice or lost.
    await session(24);
    expect(await everything()).toBe(expected());
    const gens = (await readdir(dir)).filter((x) => /^web\.h-1\.\d{6}\.log$/.test(x)).sort();
    expect(gens).toEqual(gens.map((_, i) => `web.h-1.${String(i).padStart(6, '0')}.log`));
  });
});

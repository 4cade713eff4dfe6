/**
 * The listener's shared ingest journal (controller/syslog/ingest-store.ts) under crashes:
 * several hosts sending at once, so their batches share group commits; kill -9 of the
 * listener at random points, with a journal small enough that its files switch and are
 * checkpointed all the time; the same with the hosts' ingest files rotating all the while;
 * and a journal damaged or deleted while the listener is down.
 */
import { open, readdir, rm, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import pino from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { createForwarder, openPositionStore } from '../forwarder/index.js';
import { listHostFiles } from '../controller/syslog/host-files.js';
import {
  appendSlowly,
  exactlyOnceProblem,
  killHard,
  makePki,
  missingSummary,
  seededRandom,
  sequencesIn,
  spawnListener,
  tempDir,
  waitFor,
  waitForCount,
  waitForLines,
  writeLines,
  type Child,
  type Cleanups,
  type HostIdentity,
} from './logs-fixtures.js';

const cleanups: Cleanups = [];
afterEach(async () => {
  while (cleanups.length > 0) await cleanups.pop()?.();
});

interface Fleet {
  readonly hosts: readonly HostIdentity[];
  readonly dir: string;
  readonly logDir: string;
  readonly files: readonly string[];
  readonly ingests: readonly string[];
  listener: Child & { port: number };
  restart(): Promise<void>;
}

type ListenerOptions = NonNullable<Parameters<typeof spawnListener>[6]>;

/** `count` hosts, a listener child for them all, and an in-process forwarder per host. */
async function fleet(count: number, options: ListenerOptions = {}, readChunkBytes?: number): Promise<Fleet> {
  const pki = await makePki();
  const hosts: HostIdentity[] = [];
  for (let i = 1; i <= count; i++) hosts.push(await pki.host(`web-${i}`));
  const dir = await tempDir('logs-journal');
  cleanups.push(() => rm(dir, { recursive: true, force: true }));
  const logDir = join(dir, 'ingest');
  const first = await spawnListener(cleanups, pki, hosts, logDir, dir, 0, options);
  const files = hosts.map((h) => join(dir, `${h.hostId}.app.log`));
  const result: Fleet = {
    hosts,
    dir,
    logDir,
    files,
    ingests: hosts.map((h) => join(logDir, `${h.hostId}.log`)),
    listener: first,
    async restart() {
      result.listener = await spawnListener(cleanups, pki, hosts, logDir, dir, first.port, options);
    },
  };
  for (const [i, host] of hosts.entries()) {
    const file = files[i] as string;
    await writeLines(file, 0, 500);
    const store = await openPositionStore(join(dir, `${host.hostId}.positions.db`));
    const forwarder = createForwarder({
      tls: host,
      controller: { host: '127.0.0.1', port: first.port },
      files: [file],
      mode: 'corral',
      store,
      log: pino({ level: 'silent' }),
      pollIntervalMs: 20,
      ...(readChunkBytes === undefined ? {} : { readChunkBytes }),
      backoffBaseMs: 20,
      backoffCapMs: 200,
    });
    const ac = new AbortController();
    const running = forwarder.run(ac.signal);
    cleanups.push(async () => {
      ac.abort();
      await running;
      await forwarder.close();
      await store.close();
    });
  }
  return result;
}

const ingestedLines = async (f: Fleet): Promise<number> =>
  (await Promise.all(f.ingests.map((p) => sequencesIn(p)))).reduce((n, s) => n + s.length, 0);

/** Every line 0..count-1 at least once, first seen in order; how many came twice. */
function noLossProblem(seqs: readonly number[], count: number): string | undefined {
  const seen = new Set<number>();
  const firsts: number[] = [];
  for (const s of seqs) {
    if (seen.has(s)) continue;
    seen.add(s);
    firsts.push(s);
  }
  return exactlyOnceProblem(firsts, count);
}

describe('ingest journal: exactly once across listener crashes with many hosts', () => {
  it('4 hosts sending at once, 6 kill -9 of the listener at random points, journal files switching and checkpointed all the while', async () => {
    const seed = Number(process.env.LOGS_JOURNAL_SEED ?? Date.now() % 1_000_000);
    const random = seededRandom(seed);
    const lines = 8000;
    // A few commits fill a file: switches and checkpoints happen around every kill point.
    const f = await fleet(4, { journalBytes: 64 * 1024 });
    const writing = Promise.all(
      f.files.map((file) => appendSlowly(file, 500, lines, { perStep: 20, stepMs: 15 })),
    );
    let since = 0;
    for (let k = 0; k < 6; k++) {
      const flowing = async (): Promise<boolean> => {
        const now = await ingestedLines(f);
        return now > since + 400 || now === lines * f.hosts.length;
      };
      await waitFor('lines flowing', flowing, 20_000).catch((e: unknown) => {
        throw new Error(`${String(e)} after kill ${k} (seed ${seed}); listener said: ${f.listener.output()}`);
      });
      await sleep(random() * 150);
      await killHard(f.listener);
      since = await ingestedLines(f);
      await f.restart();
    }
    await writing;
    for (const ingest of f.ingests) {
      const seqs = await waitForLines(ingest, lines);
      expect(
        exactlyOnceProblem(seqs, lines),
        `seed ${seed} (LOGS_JOURNAL_SEED=${seed}): ${ingest}`,
      ).toBeUndefined();
    }
    const journals = (await readdir(f.logDir)).filter((n) => n.startsWith('ingest-journal.'));
    expect(journals.sort()).toEqual(['ingest-journal.0', 'ingest-journal.1']);
    // Both files took commits: each holds at least one whole record past its header. (Not a
    // size: how far each file grew depends on where the kills fell and on how far the senders
    // ran ahead of the listener; under load a file stayed under 32 KiB.)
    for (const name of journals) expect(await recordCount(join(f.logDir, name)), name).toBeGreaterThan(0);
  }, 120_000);
});

/** Every line of a host, across its rotated files (oldest first) and its current one. */
async function hostSequences(logDir: string, hostId: string): Promise<number[]> {
  const out: number[] = [];
  for (const f of await listHostFiles(logDir, hostId)) out.push(...(await sequencesIn(join(logDir, f.name))));
  return out;
}

describe('ingest rotation: exactly once across listener crashes while files rotate', () => {
  it('3 named hosts, files rotating every ~16 KiB, 8 kill -9 of the listener at random points: every line once, in order, across the generations', async () => {
    const seed = Number(process.env.LOGS_JOURNAL_SEED ?? Date.now() % 1_000_000);
    const random = seededRandom(seed);
    const lines = 6000;
    const maxFileBytes = 16 * 1024;
    const f = await fleet(
      3,
      {
        journalBytes: 128 * 1024,
        maxFileBytes,
        keepFiles: 1000,
        hostName: (h) => `srv-${h.hostId}`,
      },
      // Small reads, so items are small and files rotate near their size.
      16 * 1024,
    );
    const total = async (): Promise<number> => {
      let n = 0;
      for (const h of f.hosts) n += (await hostSequences(f.logDir, h.hostId)).length;
      return n;
    };
    const writing = Promise.all(
      f.files.map((file) => appendSlowly(file, 500, lines, { perStep: 25, stepMs: 10 })),
    );
    let since = 0;
    for (let k = 0; k < 8; k++) {
      await waitFor(
        'lines flowing',
        async () => {
          const now = await total();
          return now > since + 300 || now === lines * f.hosts.length;
        },
        20_000,
      ).catch(async (e: unknown) => {
        const files = await Promise.all(f.hosts.map((h) => listHostFiles(f.logDir, h.hostId)));
        throw new Error(
          `${String(e)} after kill ${k} (seed ${seed}); ${await total()} lines in ${files
            .flat()
            .map((x) => `${x.name} ${x.size}`)
            .join(', ')}; listener said: ${f.listener.output()}`,
        );
      });
      await sleep(random() * 120);
      await killHard(f.listener);
      since = await total();
      await f.restart();
    }
    await writing;
    for (const h of f.hosts) {
      let seqs: number[] = [];
      const stalled = await waitForCount(
        `every line of ${h.hostId}`,
        async () => (seqs = await hostSequences(f.logDir, h.hostId)).length,
        lines,
      ).then(
        () => '',
        (e: unknown) => `${String(e)}; listener said: ${f.listener.output()}`,
      );
      expect(
        exactlyOnceProblem(seqs, lines),
        `seed ${seed} (LOGS_JOURNAL_SEED=${seed}): ${h.hostId}: ${missingSummary(seqs, lines)} ${stalled}`,
      ).toBeUndefined();
      const files = await listHostFiles(f.logDir, h.hostId);
      const rotated = files.filter((x) => x.generation !== undefined);
      // 1.2 MB of lines; a file is rotated after the item (a forwarder batch) that takes it
      // past 16 KiB.
      const sizes = files.map((x) => `${x.name} ${x.size}`).join(', ');
      expect(rotated.length, `${h.hostId}: ${sizes}`).toBeGreaterThanOrEqual(10);
      expect(rotated.map((x) => x.generation)).toEqual(rotated.map((_, i) => i));
      for (const x of rotated) expect(x.name.startsWith(`srv-${h.hostId}.${h.hostId}.`), x.name).toBe(true);
      for (const x of rotated) expect(x.size, x.name).toBeGreaterThanOrEqual(maxFileBytes);
      expect(files.filter((x) => x.generation === undefined).map((x) => x.name)).toEqual([
        `srv-${h.hostId}.${h.hostId}.log`,
      ]);
    }
  }, 300_000);
});

/** How many records the journal file holds, by their headers' lengths (contents unchecked). */
async function recordCount(journal: string): Promise<number> {
  const fh = await open(journal, 'r');
  try {
    const size = (await fh.stat()).size;
    let at = 16;
    let n = 0;
    const head = Buffer.alloc(24);
    while (at + 24 <= size) {
      await fh.read(head, 0, 24, at);
      if (head.readUInt32BE(0) !== 0x434c4a52) break;
      at += 24 + head.readUInt32BE(8) + head.readUInt32BE(12);
      if (at <= size) n++;
    }
    return n;
  } finally {
    await fh.close();
  }
}

/**
 * Kills the listener once group commits of several hosts are in the journal (nothing is
 * checkpointed yet): at least three records, so that damage to the first is not its tail.
 */
async function crashWithJournal(f: Fleet): Promise<string> {
  const journal = join(f.logDir, 'ingest-journal.0');
  await waitFor(
    'group commits in the journal',
    async () => (await recordCount(journal)) >= 3 && (await ingestedLines(f)) > 1500,
    30_000,
  );
  await killHard(f.listener);
  return journal;
}

/** Bytes of the journal file's first record (after the 16-byte file header). */
async function firstRecord(journal: string): Promise<Buffer> {
  const fh = await open(journal, 'r');
  try {
    const head = Buffer.alloc(24);
    await fh.read(head, 0, 24, 16);
    const length = 24 + head.readUInt32BE(8) + head.readUInt32BE(12);
    const record = Buffer.alloc(length);
    await fh.read(record, 0, length, 16);
    return record;
  } finally {
    await fh.close();
  }
}

describe('ingest journal: damaged or missing while the listener is down', () => {
  it('a record cut short and garbage at its tail are ignored: nothing lost, nothing twice', async () => {
    const lines = 4000;
    const f = await fleet(3);
    const writing = Promise.all(
      f.files.map((file) => appendSlowly(file, 500, lines, { perStep: 50, stepMs: 4 })),
    );
    const journal = await crashWithJournal(f);
    const record = await firstRecord(journal);
    const fh = await open(journal, 'a');
    await fh.write(
      Buffer.concat([record.subarray(0, Math.floor(record.length / 2)), Buffer.from('garbage')]),
    );
    await fh.close();
    await f.restart();
    await writing;
    for (const ingest of f.ingests) {
      expect(exactlyOnceProblem(await waitForLines(ingest, lines), lines), ingest).toBeUndefined();
    }
  }, 90_000);

  for (const damage of ['both files deleted', 'header overwritten', 'first record damaged'] as const) {
    it(`${damage}: no line is lost (the ingest files are kept whole), and the log says so`, async () => {
      const lines = 4000;
      const f = await fleet(3);
      const writing = Promise.all(
        f.files.map((file) => appendSlowly(file, 500, lines, { perStep: 50, stepMs: 4 })),
      );
      const journal = await crashWithJournal(f);
      if (damage === 'both files deleted') {
        await unlink(journal);
        await unlink(join(f.logDir, 'ingest-journal.1'));
      } else {
        const fh = await open(journal, 'r+');
        // The header, or one byte inside the first record's lines (a later record still checks out).
        const at = damage === 'header overwritten' ? 0 : 16 + (await firstRecord(journal)).length - 3;
        await fh.write(
          Buffer.from(damage === 'header overwritten' ? 'not a journal!!!' : 'X'),
          0,
          undefined,
          at,
        );
        await fh.close();
      }
      await f.restart();
      await writing;
      for (const ingest of f.ingests) {
        const seqs = await waitFor(
          `every line in ${ingest}`,
          async () => new Set(await sequencesIn(ingest)).size >= lines,
          45_000,
        ).then(() => sequencesIn(ingest));
        expect(noLossProblem(seqs, lines), `${ingest}: ${missingSummary(seqs, lines)}`).toBeUndefined();
      }
      const said = f.listener.output();
      if (damage === 'both files deleted') expect(said).toContain('ingest journal missing or empty');
      else {
        expect(said).toContain('put aside');
        expect((await readdir(f.logDir)).some((n) => n.startsWith('ingest-journal.0.damaged-'))).toBe(true);
      }
    }, 90_000);
  }
});

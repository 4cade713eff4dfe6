import {
  copyFile,
  mkdtemp,
  readdir,
  readFile,
  rm,
  stat,
  truncate,
  unlink,
  writeFile,
} from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sqlite3 from 'sqlite3';
import { afterEach, describe, expect, it } from 'vitest';
import { openPositionStore, type GenerationRecord, type PositionStore } from './position-store.js';

const dirs: string[] = [];
const stores: PositionStore[] = [];
afterEach(async () => {
  for (const s of stores.splice(0)) await s.close();
  for (const d of dirs.splice(0)) await rm(d, { recursive: true, force: true });
});

async function place(): Promise<{ dir: string; file: string; marker: string }> {
  const dir = await mkdtemp(join(tmpdir(), 'corral-positions-'));
  dirs.push(dir);
  return { dir, file: join(dir, 'positions.db'), marker: join(dir, 'positions.db.marker') };
}

async function open(file: string): Promise<PositionStore> {
  const store = await openPositionStore(file);
  stores.push(store);
  return store;
}

async function closeAll(): Promise<void> {
  for (const s of stores.splice(0)) await s.close();
}

const record: GenerationRecord = {
  path: '/var/log/app.log',
  streamId: 'a'.repeat(32),
  dev: '1',
  ino: '2',
  headHash: 'b'.repeat(64),
  offset: 0,
  size: 10,
  state: 'reading',
  seq: 0,
};

describe('positions store: how it opens', () => {
  it('a first start: fresh, in recovery until told, with a 0600 marker naming the database', async () => {
    const { file, marker } = await place();
    const store = await open(file);
    expect(store.opening).toEqual({ state: 'fresh' });
    expect(store.recovery()).toBe('fresh');
    expect((await stat(marker)).mode & 0o777).toBe(0o600);
    expect(JSON.parse(await readFile(marker, 'utf8'))).toMatchObject({
      version: 1,
      storeId: expect.stringMatching(/^[0-9a-f]{32}$/),
    });
    await store.apply(record.path, { put: [record] });
    await store.setOffset(record.path, record.streamId, 7);
    await store.finishRecovery();
    await closeAll();
    const again = await open(file);
    expect(again.opening).toEqual({ state: 'ok' });
    expect(again.recovery()).toBeUndefined();
    expect(await again.generations(record.path)).toEqual([{ ...record, offset: 7 }]);
    expect(await again.pathState(record.path)).toBe('followed');
  });

  it('still in recovery after a restart that came before the recovery finished', async () => {
    const { file } = await place();
    await open(file);
    await closeAll();
    expect((await open(file)).recovery()).toBe('fresh');
  });

  const losses: [string, (file: string) => Promise<void>, string, RegExp][] = [
    ['missing', (f) => unlink(f), 'missing', /missing/],
    ['zero length', (f) => truncate(f, 0), 'empty', /empty/],
    ['not a database', (f) => writeFile(f, 'garbage '.repeat(1000)), 'damaged', /file is not a database/],
  ];
  for (const [name, damage, reason, detail] of losses) {
    it(`${name}, where the marker says it existed: lost (${reason}), put aside, recovery from the listener`, async () => {
      const { dir, file } = await place();
      const first = await open(file);
      await first.apply(record.path, { put: [record] });
      await first.finishRecovery();
      await closeAll();
      await damage(file);
      const store = await open(file);
      expect(store.opening).toMatchObject({ state: 'lost', reason, detail: expect.stringMatching(detail) });
      expect(store.recovery()).toBe('lost');
      expect(await store.generations(record.path)).toEqual([]);
      if (reason !== 'missing') {
        expect((await readdir(dir)).some((n) => n.startsWith(`positions.db.${reason}-`))).toBe(true);
      }
    });
  }

  it("another forwarder's database in its place: lost (foreign)", async () => {
    const a = await place();
    const b = await place();
    await open(a.file);
    await open(b.file);
    await closeAll();
    await copyFile(b.file, a.file);
    const store = await open(a.file);
    expect(store.opening).toMatchObject({ state: 'lost', reason: 'foreign' });
  });

  it('a damaged marker beside an intact database: the database stands, the marker is written again', async () => {
    const { file, marker } = await place();
    const first = await open(file);
    await first.finishRecovery();
    await closeAll();
    await writeFile(marker, '{"version":1,');
    const store = await open(file);
    expect(store.opening).toEqual({ state: 'ok' });
    expect(JSON.parse(await readFile(marker, 'utf8'))).toMatchObject({ version: 1 });
  });

  it('a version-1 database is carried over: its record reading, the path to be baselined', async () => {
    const { file, marker } = await place();
    await new Promise<void>((resolve, reject) => {
      const db = new sqlite3.Database(file, (e) => {
        if (e) return reject(e);
        db.exec(
          `CREATE TABLE positions (path TEXT PRIMARY KEY, stream_id TEXT NOT NULL, dev TEXT NOT NULL,
             ino TEXT NOT NULL, head_hash TEXT NOT NULL, offset INTEGER NOT NULL, updated_at_ms INTEGER NOT NULL);
           INSERT INTO positions VALUES ('/var/log/app.log', '${'a'.repeat(32)}', '1', '2', '${'b'.repeat(64)}', 42, 0);`,
          (e2) => db.close(() => (e2 ? reject(e2) : resolve())),
        );
      });
    });
    const store = await open(file);
    expect(store.opening).toEqual({ state: 'ok' });
    expect(await store.pathState(record.path)).toBe('legacy');
    expect(await store.generations(record.path)).toEqual([{ ...record, offset: 42, size: 42 }]);
    expect(JSON.parse(await readFile(marker, 'utf8'))).toMatchObject({ version: 1 });
  });

  it('counts lost generations across restarts', async () => {
    const { file } = await place();
    const store = await open(file);
    await store.apply(record.path, { lost: { generations: 1, bytes: 100 } });
    await store.apply(record.path, { lost: { generations: 2, bytes: 50 } });
    await closeAll();
    expect(await (await open(file)).counters()).toEqual({ lostGenerations: 3, lostBytes: 150 });
  });
});

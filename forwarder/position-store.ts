import { Type, type Static } from '@sinclair/typebox';
import { randomBytes } from 'node:crypto';
import { rename, stat } from 'node:fs/promises';
import sqlite3 from 'sqlite3';
import { parseWith } from '../protocol/validate.js';
import { ForwarderError, ForwarderErrorCode } from './errors.js';
import { markerPath, readMarker, writeMarker, type MarkerState } from './store-marker.js';
import { SingleFlight } from '../kit/single-flight.js';
import { ErrorCode, isCorralError } from '../protocol/errors.js';

/** Store operations that may wait for their turn: a few per followed file. */
const POSITION_STORE_MAX_QUEUED = 1024;

/**
 * Where a generation of a followed file stands:
 *  - `reading`: the one being shipped (one per path at most);
 *  - `pending`: found, not started yet, shipped after those before it (by `seq`);
 *  - `done`: shipped to its end; `skipped`: there before the path was first followed;
 *  - `lost` / `lost-reported`: vanished before it was read (reported to the listener or not).
 * `done` and `skipped` records are how rotated siblings are recognised as already handled.
 */
export const GENERATION_STATES = ['reading', 'pending', 'done', 'skipped', 'lost', 'lost-reported'] as const;
export type GenerationState = (typeof GENERATION_STATES)[number];

export const GenerationRecord = Type.Object(
  {
    path: Type.String({ minLength: 1, maxLength: 4096 }),
    streamId: Type.String({ pattern: '^[0-9a-f]{32}$' }),
    dev: Type.String({ pattern: '^[0-9]{1,24}$' }),
    ino: Type.String({ pattern: '^[0-9]{1,24}$' }),
    headHash: Type.String({ pattern: '^[0-9a-f]{64}$' }),
    /** Bytes acknowledged (for `done`, the generation's length). */
    offset: Type.Integer({ minimum: 0 }),
    /** The file's size when last seen, to say how much a vanished generation took with it. */
    size: Type.Integer({ minimum: 0 }),
    state: Type.Union(GENERATION_STATES.map((s) => Type.Literal(s))),
    /** Order among the path's generations: older first. */
    seq: Type.Integer({ minimum: 0 }),
  },
  { additionalProperties: false },
);
export type GenerationRecord = Static<typeof GenerationRecord>;

/** How the store was found when it was opened. */
export type StoreOpening =
  | { readonly state: 'ok' }
  /** First start: no marker, no database. */
  | { readonly state: 'fresh' }
  /**
   * The database this forwarder shipped with is gone; `movedTo` is where a damaged or foreign
   * one was put aside. Positions are to be recovered from the listener.
   */
  | {
      readonly state: 'lost';
      readonly reason: 'missing' | 'empty' | 'damaged' | 'foreign' | 'interrupted';
      readonly detail: string;
      readonly movedTo?: string;
    };

export type Recovery = 'fresh' | 'lost';

export interface StoreCounters {
  /** Generations that vanished before they were read, ever (see the README's Logs section). */
  readonly lostGenerations: number;
  /** Unread bytes those generations held, as far as the forwarder knew. */
  readonly lostBytes: number;
}

/**
 * How far a followed path is: `unplaced` after a first start recorded what was there but
 * before the listener was asked whether it knows the files (a state dir wiped whole);
 * `legacy` for a path from a version-1 database, whose rotated siblings are not recorded.
 */
export type PathState = 'followed' | 'unplaced' | 'legacy';

export interface StoreChange {
  readonly put?: readonly GenerationRecord[];
  readonly remove?: readonly string[];
  /** Adds to the lost counters. */
  readonly lost?: { readonly generations: number; readonly bytes: number };
}

export interface PositionStore {
  readonly file: string;
  readonly opening: StoreOpening;
  /**
   * Set from a first start or a loss until `finishRecovery`: paths not followed yet are to be
   * placed by asking the listener, not started afresh.
   */
  recovery(): Recovery | undefined;
  /** The path's state; undefined for a path never followed. */
  pathState(path: string): Promise<PathState | undefined>;
  /** The path's generations, oldest first. */
  generations(path: string): Promise<GenerationRecord[]>;
  /** Applies `change` in one transaction and sets the path's state (`followed` unless told). */
  apply(path: string, change: StoreChange, state?: PathState): Promise<void>;
  /** Moves the acknowledged offset of one generation. */
  setOffset(path: string, streamId: string, offset: number): Promise<void>;
  counters(): Promise<StoreCounters>;
  finishRecovery(): Promise<void>;
  close(): Promise<void>;
  [Symbol.asyncDispose](): Promise<void>;
}

const SCHEMA = [
  `CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)`,
  `CREATE TABLE IF NOT EXISTS paths (path TEXT PRIMARY KEY, state TEXT NOT NULL)`,
  `CREATE TABLE IF NOT EXISTS generations (
    stream_id TEXT PRIMARY KEY,
    path TEXT NOT NULL,
    dev TEXT NOT NULL,
    ino TEXT NOT NULL,
    head_hash TEXT NOT NULL,
    offset INTEGER NOT NULL,
    size INTEGER NOT NULL,
    state TEXT NOT NULL,
    seq INTEGER NOT NULL,
    updated_at_ms INTEGER NOT NULL
  )`,
  `CREATE INDEX IF NOT EXISTS generations_by_path ON generations (path, seq)`,
];
const SCHEMA_VERSION = '2';

interface Row {
  [column: string]: unknown;
}

/** A sqlite3 connection with promise helpers; every error names the file. */
class Db {
  private constructor(
    private readonly handle: sqlite3.Database,
    readonly file: string,
  ) {}

  static async open(file: string): Promise<Db> {
    const handle = await new Promise<sqlite3.Database>((resolve, reject) => {
      const db = new sqlite3.Database(file, (e: Error | null) => (e ? reject(e) : resolve(db)));
    });
    return new Db(handle, file);
  }

  run(sql: string, params: readonly unknown[] = []): Promise<void> {
    return new Promise((resolve, reject) =>
      this.handle.run(sql, params, (e: Error | null) => (e ? reject(e) : resolve())),
    );
  }

  all(sql: string, params: readonly unknown[] = []): Promise<Row[]> {
    return new Promise((resolve, reject) =>
      this.handle.all(sql, params, (e: Error | null, rows: Row[]) => (e ? reject(e) : resolve(rows))),
    );
  }

  close(): Promise<void> {
    return new Promise((resolve, reject) =>
      this.handle.close((e: Error | null) => (e ? reject(e) : resolve())),
    );
  }
}

const describe = (e: unknown): string => (e instanceof Error ? e.message : String(e));

function damaged(file: string, e: unknown): ForwarderError {
  return new ForwarderError(
    ForwarderErrorCode.POSITIONS_DAMAGED,
    `positions database ${file}: ${describe(e)}`,
    {
      cause: e,
    },
  );
}

async function exists(path: string): Promise<'missing' | 'empty' | 'present'> {
  try {
    return (await stat(path)).size === 0 ? 'empty' : 'present';
  } catch (e: unknown) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return 'missing';
    throw e;
  }
}

/** Renames the database and its WAL files out of the way; returns the main file's new name. */
async function putAside(file: string, why: string, clock: () => number): Promise<string | undefined> {
  const stamp = new Date(clock()).toISOString().replace(/[:.]/g, '-');
  let moved: string | undefined;
  for (const suffix of ['', '-wal', '-shm']) {
    const to = `${file}.${why}-${stamp}${suffix}`;
    try {
      await rename(`${file}${suffix}`, to);
      if (suffix === '') moved = to;
    } catch (e: unknown) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
    }
  }
  return moved;
}

interface Inspected {
  readonly storeId?: string | undefined;
  readonly recovery?: Recovery;
  /** A version-1 database (one `positions` table, no meta). */
  readonly legacy: boolean;
}

/** Settings of every connection (outside any transaction). */
async function configure(db: Db): Promise<void> {
  await db.run('PRAGMA busy_timeout = 5000');
  await db.run('PRAGMA journal_mode = WAL');
  await db.run('PRAGMA synchronous = NORMAL');
}

async function inspect(db: Db): Promise<Inspected> {
  await configure(db);
  const check = await db.all('PRAGMA quick_check');
  const verdict = check[0]?.['quick_check'];
  if (verdict !== 'ok')
    throw new ForwarderError(
      ForwarderErrorCode.POSITIONS_DAMAGED,
      `integrity check failed: ${String(verdict)}`,
    );
  const tables = new Set(
    (await db.all(`SELECT name FROM sqlite_master WHERE type = 'table'`)).map((r) => String(r['name'])),
  );
  if (!tables.has('meta')) return { legacy: tables.has('positions') };
  const meta = new Map(
    (await db.all('SELECT key, value FROM meta')).map((r) => [String(r['key']), String(r['value'])]),
  );
  const recovery = meta.get('recovery');
  return {
    storeId: meta.get('store_id'),
    ...(recovery === 'fresh' || recovery === 'lost' ? { recovery } : {}),
    legacy: false,
  };
}

async function createSchema(db: Db): Promise<void> {
  for (const sql of SCHEMA) await db.run(sql);
}

/** Turns a version-1 database (one record per path) into this schema, in one transaction. */
async function migrateLegacy(db: Db, storeId: string): Promise<void> {
  await db.run('BEGIN IMMEDIATE');
  try {
    await createSchema(db);
    await db.run(
      `INSERT INTO generations (stream_id, path, dev, ino, head_hash, offset, size, state, seq, updated_at_ms)
       SELECT stream_id, path, dev, ino, head_hash, offset, offset, 'reading', 0, updated_at_ms FROM positions`,
    );
    await db.run(`INSERT INTO paths (path, state) SELECT path, 'legacy' FROM positions`);
    await db.run('DROP TABLE positions');
    await db.run(`INSERT INTO meta (key, value) VALUES ('schema', ?), ('store_id', ?)`, [
      SCHEMA_VERSION,
      storeId,
    ]);
    await db.run('COMMIT');
  } catch (e: unknown) {
    await db.run('ROLLBACK').catch(() => undefined /* the transaction may not have begun */);
    throw e;
  }
}

const newStoreId = (): string => randomBytes(16).toString('hex');

/**
 * Opens the forwarder's positions database (SQLite, WAL) at `file`, with its marker beside it
 * (store-marker.ts). A missing or empty database where the marker says one existed, one that
 * fails SQLite's integrity check, or one with another id, is reported in `opening` as lost
 * (a damaged or foreign one is renamed aside, never deleted) and a new one is started in
 * recovery, for the forwarder to rebuild from the listener. It never opens as "fresh" after
 * a loss. Errors name the file (CORRAL_ERR_POSITIONS_DAMAGED).
 */
export async function openPositionStore(
  file: string,
  clock: () => number = Date.now,
): Promise<PositionStore> {
  const marker: MarkerState = await readMarker(markerPath(file));
  const onDisk = await exists(file);
  let db: Db | undefined;
  let opening: StoreOpening = { state: 'ok' };
  let storeId: string | undefined;
  let recovery: Recovery | undefined;
  const markerSays = marker.state !== 'absent';

  if (onDisk === 'present') {
    let inspected: Inspected | undefined;
    try {
      db = await Db.open(file);
      inspected = await inspect(db);
    } catch (e: unknown) {
      await db?.close().catch(() => undefined /* already failing: the open error is the one reported */);
      db = undefined;
      const movedTo = await putAside(file, 'damaged', clock);
      opening = { state: 'lost', reason: 'damaged', detail: describe(e), ...(movedTo ? { movedTo } : {}) };
    }
    if (db && inspected) {
      if (inspected.legacy) {
        storeId = marker.state === 'ok' ? marker.storeId : newStoreId();
        await migrateLegacy(db, storeId).catch((e: unknown) => {
          throw damaged(file, e);
        });
      } else if (inspected.storeId === undefined) {
        // An empty SQLite database (created, never written): no more than an empty file.
        await db.close();
        db = undefined;
        await putAside(file, 'empty', clock);
        opening = markerSays
          ? { state: 'lost', reason: 'empty', detail: 'the database holds no positions' }
          : { state: 'fresh' };
      } else if (marker.state === 'ok' && marker.storeId !== inspected.storeId) {
        await db.close();
        db = undefined;
        const movedTo = await putAside(file, 'foreign', clock);
        opening = {
          state: 'lost',
          reason: 'foreign',
          detail: `the database is ${inspected.storeId}, the marker names ${marker.storeId}`,
          ...(movedTo ? { movedTo } : {}),
        };
      } else {
        storeId = inspected.storeId;
        recovery = inspected.recovery;
        if (recovery === 'lost') {
          opening = {
            state: 'lost',
            reason: 'interrupted',
            detail: 'a recovery from the listener did not finish',
          };
        } else if (recovery === 'fresh') opening = { state: 'fresh' };
      }
    }
  } else {
    // Leftover WAL files would be replayed into a new database: put them aside with it.
    await putAside(file, onDisk, clock);
    opening = markerSays
      ? {
          state: 'lost',
          reason: onDisk,
          detail: onDisk === 'missing' ? 'the database file is missing' : 'the database file is empty',
        }
      : { state: 'fresh' };
  }

  try {
    if (!db) {
      storeId = marker.state === 'ok' ? marker.storeId : newStoreId();
      recovery = opening.state === 'lost' ? 'lost' : 'fresh';
      db = await Db.open(file);
      await configure(db);
      await createSchema(db);
      await db.run(`INSERT INTO meta (key, value) VALUES ('schema', ?), ('store_id', ?), ('recovery', ?)`, [
        SCHEMA_VERSION,
        storeId,
        recovery,
      ]);
    } else {
      await createSchema(db);
    }
  } catch (e: unknown) {
    await db?.close().catch(() => undefined /* already failing: the open error is the one reported */);
    throw damaged(file, e);
  }
  if (marker.state !== 'ok' || marker.storeId !== storeId)
    await writeMarker(markerPath(file), storeId as string);
  return createStore(db, file, opening, recovery, clock);
}

function createStore(
  db: Db,
  file: string,
  opening: StoreOpening,
  initialRecovery: Recovery | undefined,
  clock: () => number,
): PositionStore {
  let recovery = initialRecovery;
  // One operation at a time, so a transaction never takes in another caller's statement.
  const turns = new SingleFlight({ name: 'position store', maxQueued: POSITION_STORE_MAX_QUEUED });
  function serial<T>(fn: () => Promise<T>): Promise<T> {
    return turns.run(fn).catch((e: unknown) => {
      if (isCorralError(e, ErrorCode.UNAVAILABLE)) throw e; // refused by the queue, never ran
      throw damaged(file, e);
    });
  }
  async function transaction(fn: () => Promise<void>): Promise<void> {
    await db.run('BEGIN IMMEDIATE');
    try {
      await fn();
      await db.run('COMMIT');
    } catch (e: unknown) {
      await db.run('ROLLBACK').catch(() => undefined /* the failed statement may have ended it */);
      throw e;
    }
  }
  const meta = async (key: string): Promise<number> => {
    const rows = await db.all('SELECT value FROM meta WHERE key = ?', [key]);
    return Number(rows[0]?.['value'] ?? 0);
  };

  let closed: Promise<void> | undefined;
  const close = (): Promise<void> => (closed ??= turns.idle().then(() => db.close()));

  return {
    file,
    opening,
    recovery: () => recovery,
    pathState: (path) =>
      serial(async () => {
        const state = (await db.all('SELECT state FROM paths WHERE path = ?', [path]))[0]?.['state'];
        if (state === undefined) return undefined;
        if (state === 'followed' || state === 'unplaced' || state === 'legacy') return state;
        throw new ForwarderError(
          ForwarderErrorCode.POSITIONS_DAMAGED,
          `${file}: path ${path} has an unknown state ${JSON.stringify(state)}`,
        );
      }),
    generations: (path) =>
      serial(async () => {
        const rows = await db.all(
          `SELECT path, stream_id, dev, ino, head_hash, offset, size, state, seq FROM generations
           WHERE path = ? ORDER BY seq`,
          [path],
        );
        return rows.map((row) =>
          parseWith(
            GenerationRecord,
            {
              path: row['path'],
              streamId: row['stream_id'],
              dev: row['dev'],
              ino: row['ino'],
              headHash: row['head_hash'],
              offset: row['offset'],
              size: row['size'],
              state: row['state'],
              seq: row['seq'],
            },
            `${file}: generation of ${path}`,
          ),
        );
      }),
    apply: (path, change, state = 'followed') =>
      serial(() =>
        transaction(async () => {
          const now = clock();
          await db.run(
            'INSERT INTO paths (path, state) VALUES (?, ?) ON CONFLICT (path) DO UPDATE SET state = excluded.state',
            [path, state],
          );
          for (const id of change.remove ?? [])
            await db.run('DELETE FROM generations WHERE stream_id = ?', [id]);
          for (const r of change.put ?? []) {
            await db.run(
              `INSERT INTO generations (stream_id, path, dev, ino, head_hash, offset, size, state, seq, updated_at_ms)
               VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
               ON CONFLICT (stream_id) DO UPDATE SET dev = excluded.dev, ino = excluded.ino,
                 head_hash = excluded.head_hash, offset = excluded.offset, size = excluded.size,
                 state = excluded.state, seq = excluded.seq, updated_at_ms = excluded.updated_at_ms`,
              [r.streamId, r.path, r.dev, r.ino, r.headHash, r.offset, r.size, r.state, r.seq, now],
            );
          }
          if (change.lost) {
            for (const [key, add] of [
              ['lost_generations', change.lost.generations],
              ['lost_bytes', change.lost.bytes],
            ] as const) {
              await db.run(
                `INSERT INTO meta (key, value) VALUES (?, ?)
                 ON CONFLICT (key) DO UPDATE SET value = CAST(value AS INTEGER) + ?`,
                [key, String(add), add],
              );
            }
          }
        }),
      ),
    setOffset: (path, streamId, offset) =>
      serial(() =>
        db.run(
          'UPDATE generations SET offset = ?, updated_at_ms = ? WHERE path = ? AND stream_id = ? AND offset < ?',
          [offset, clock(), path, streamId, offset],
        ),
      ),
    counters: () =>
      serial(async () => ({
        lostGenerations: await meta('lost_generations'),
        lostBytes: await meta('lost_bytes'),
      })),
    finishRecovery: () =>
      serial(async () => {
        await db.run(`DELETE FROM meta WHERE key = 'recovery'`);
        recovery = undefined;
      }),
    close,
    [Symbol.asyncDispose]: close,
  };
}

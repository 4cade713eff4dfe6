import { Type, type Static } from '@sinclair/typebox';
import sqlite3 from 'sqlite3';
import { parseWith } from '../protocol/validate.js';

/** Where the forwarder is in one file: the generation it reads and how far it is acknowledged. */
export const StreamRecord = Type.Object(
  {
    path: Type.String({ minLength: 1, maxLength: 4096 }),
    streamId: Type.String({ pattern: '^[0-9a-f]{32}$' }),
    dev: Type.String({ pattern: '^[0-9]{1,24}$' }),
    ino: Type.String({ pattern: '^[0-9]{1,24}$' }),
    headHash: Type.String({ pattern: '^[0-9a-f]{64}$' }),
    offset: Type.Integer({ minimum: 0 }),
  },
  { additionalProperties: false },
);
export type StreamRecord = Static<typeof StreamRecord>;

export interface PositionStore {
  get(path: string): Promise<StreamRecord | undefined>;
  /** Inserts or replaces the record of `record.path`. */
  put(record: StreamRecord): Promise<void>;
  /** Moves the acknowledged offset of the current generation of `path`. */
  setOffset(path: string, streamId: string, offset: number): Promise<void>;
  close(): Promise<void>;
  [Symbol.asyncDispose](): Promise<void>;
}

const SCHEMA = `CREATE TABLE IF NOT EXISTS positions (
  path TEXT PRIMARY KEY,
  stream_id TEXT NOT NULL,
  dev TEXT NOT NULL,
  ino TEXT NOT NULL,
  head_hash TEXT NOT NULL,
  offset INTEGER NOT NULL,
  updated_at_ms INTEGER NOT NULL
)`;

interface Row {
  path: unknown;
  stream_id: unknown;
  dev: unknown;
  ino: unknown;
  head_hash: unknown;
  offset: unknown;
}

/**
 * The forwarder's positions in a small SQLite database (WAL). It is an optimisation in
 * `corral` mode (the listener also says where each stream stands) and the only record in
 * `rfc5425` mode. Writes go through one connection, in order.
 */
export async function openPositionStore(
  file: string,
  clock: () => number = Date.now,
): Promise<PositionStore> {
  const db = await new Promise<sqlite3.Database>((resolve, reject) => {
    const handle = new sqlite3.Database(file, (e: Error | null) => (e ? reject(e) : resolve(handle)));
  });
  const run = (sql: string, params: readonly unknown[] = []): Promise<void> =>
    new Promise((resolve, reject) => db.run(sql, params, (e: Error | null) => (e ? reject(e) : resolve())));
  const get = (sql: string, params: readonly unknown[]): Promise<Row | undefined> =>
    new Promise((resolve, reject) =>
      db.get(sql, params, (e: Error | null, row: Row | undefined) => (e ? reject(e) : resolve(row))),
    );
  try {
    await run('PRAGMA journal_mode = WAL');
    await run('PRAGMA synchronous = NORMAL');
    await run('PRAGMA busy_timeout = 5000');
    await run(SCHEMA);
  } catch (e: unknown) {
    db.close(() => undefined /* already failing: the open error is the one reported */);
    throw e;
  }

  let closed: Promise<void> | undefined;
  const close = (): Promise<void> =>
    (closed ??= new Promise<void>((resolve, reject) =>
      db.close((e: Error | null) => (e ? reject(e) : resolve())),
    ));

  return {
    async get(path) {
      const row = await get(
        'SELECT path, stream_id, dev, ino, head_hash, offset FROM positions WHERE path = ?',
        [path],
      );
      if (!row) return undefined;
      return parseWith(
        StreamRecord,
        {
          path: row.path,
          streamId: row.stream_id,
          dev: row.dev,
          ino: row.ino,
          headHash: row.head_hash,
          offset: row.offset,
        },
        `position of ${path}`,
      );
    },
    async put(record) {
      await run(
        `INSERT INTO positions (path, stream_id, dev, ino, head_hash, offset, updated_at_ms)
         VALUES (?, ?, ?, ?, ?, ?, ?)
         ON CONFLICT (path) DO UPDATE SET stream_id = excluded.stream_id, dev = excluded.dev,
           ino = excluded.ino, head_hash = excluded.head_hash, offset = excluded.offset,
           updated_at_ms = excluded.updated_at_ms`,
        [record.path, record.streamId, record.dev, record.ino, record.headHash, record.offset, clock()],
      );
    },
    async setOffset(path, streamId, offset) {
      await run('UPDATE positions SET offset = ?, updated_at_ms = ? WHERE path = ? AND stream_id = ?', [
        offset,
        clock(),
        path,
        streamId,
      ]);
    },
    close,
    [Symbol.asyncDispose]: close,
  };
}

import sqlite3 from 'sqlite3';
import { stat } from 'node:fs/promises';
import { ForwarderError, ForwarderErrorCode } from './errors.js';
import type { GenerationState } from './position-store.js';
import { markerPath, readMarker } from './store-marker.js';

export interface PositionReport {
  readonly file: string;
  /** `missing` with a marker beside it means the next start will recover from the listener. */
  readonly database: 'present' | 'missing';
  readonly marker: 'absent' | 'ok' | 'damaged';
  readonly recovery?: string;
  readonly lostGenerations: number;
  readonly lostBytes: number;
  readonly generations: readonly {
    readonly path: string;
    readonly state: GenerationState;
    readonly streamId: string;
    readonly offset: number;
    readonly size: number;
  }[];
}

/**
 * What the positions database says, read-only (the forwarder may be running): each followed
 * path's generations and the count of generations that vanished before they were read.
 * Throws CORRAL_ERR_POSITIONS_DAMAGED, naming the file, when it cannot be read.
 */
export async function readPositionReport(file: string): Promise<PositionReport> {
  const marker = (await readMarker(markerPath(file))).state;
  const present = await stat(file).then(
    (st) => st.size > 0,
    () => false,
  );
  if (!present) {
    return { file, database: 'missing', marker, lostGenerations: 0, lostBytes: 0, generations: [] };
  }
  let db: sqlite3.Database | undefined;
  const all = (sql: string): Promise<Record<string, unknown>[]> =>
    new Promise((resolve, reject) =>
      (db as sqlite3.Database).all(sql, (e: Error | null, rows: Record<string, unknown>[]) =>
        e ? reject(e) : resolve(rows),
      ),
    );
  try {
    db = await new Promise<sqlite3.Database>((resolve, reject) => {
      const handle = new sqlite3.Database(file, sqlite3.OPEN_READONLY, (e: Error | null) =>
        e ? reject(e) : resolve(handle),
      );
    });
    const meta = new Map(
      (await all('SELECT key, value FROM meta')).map((r) => [String(r['key']), String(r['value'])]),
    );
    const rows = await all('SELECT path, state, stream_id, offset, size FROM generations ORDER BY path, seq');
    const recovery = meta.get('recovery');
    return {
      file,
      database: 'present',
      marker,
      ...(recovery === undefined ? {} : { recovery }),
      lostGenerations: Number(meta.get('lost_generations') ?? 0),
      lostBytes: Number(meta.get('lost_bytes') ?? 0),
      generations: rows.map((r) => ({
        path: String(r['path']),
        state: String(r['state']) as GenerationState,
        streamId: String(r['stream_id']),
        offset: Number(r['offset']),
        size: Number(r['size']),
      })),
    };
  } catch (e: unknown) {
    throw new ForwarderError(
      ForwarderErrorCode.POSITIONS_DAMAGED,
      `positions database ${file}: ${e instanceof Error ? e.message : String(e)}`,
      { cause: e },
    );
  } finally {
    await new Promise<void>((resolve) => (db ? db.close(() => resolve()) : resolve()));
  }
}

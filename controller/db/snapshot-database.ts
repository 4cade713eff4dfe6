import { rm } from 'node:fs/promises';
import { sql } from 'kysely';
import type sqlite3 from 'sqlite3';
import { ControllerError, ControllerErrorCode } from '../errors.js';
import { copyDatabase } from './copy-database.js';
import { describeDatabaseTarget, type DatabaseTarget } from './database-target.js';
import { DB_BUSY_TIMEOUT_MS, openDatabase, type ControllerDb } from './open-database.js';
import { namingFile, openSqlite3 } from './sqlite3-dialect.js';

function close(raw: sqlite3.Database): Promise<void> {
  return new Promise((resolve) => raw.close(() => resolve()));
}

/**
 * Writes a consistent copy of the database at `path` to `into` (which must not exist) with
 * `VACUUM INTO`, on a connection of its own (read-only, so it never takes the write lock: in
 * WAL mode heartbeats and deploys keep committing while it reads one snapshot). The copy is
 * fsynced by SQLite. Throws CORRAL_ERR_WRITE_FAILED (removing a partial copy) when it fails.
 */
export async function snapshotDatabase(path: string, into: string): Promise<void> {
  let raw: sqlite3.Database | undefined;
  try {
    raw = await openSqlite3(path, 'readonly');
    raw.configure('busyTimeout', DB_BUSY_TIMEOUT_MS);
    const db = raw;
    await new Promise<void>((resolve, reject) =>
      db.run('VACUUM INTO ?', [into], (err: Error | null) =>
        err ? reject(namingFile(err, path)) : resolve(),
      ),
    );
  } catch (e: unknown) {
    await rm(into, { force: true });
    throw new ControllerError(
      ControllerErrorCode.WRITE_FAILED,
      `cannot snapshot ${path}: ${e instanceof Error ? e.message : String(e)}`,
      { cause: e, file: path },
    );
  } finally {
    if (raw) await close(raw);
  }
}

/**
 * Writes a consistent copy of `source` to the SQLite file `into` (which must not exist): for
 * an SQLite source VACUUM INTO (snapshotDatabase); for PostgreSQL every table read in one
 * REPEATABLE READ, READ ONLY transaction on a connection of its own (so heartbeats and deploys
 * keep committing, and the copy is the database as of one instant), written into a new SQLite
 * file with the same schema. A backup thus always holds an SQLite `corral.db`, whichever
 * database it came from, and restores into either. Throws CORRAL_ERR_WRITE_FAILED (removing a
 * partial copy) when it fails.
 */
export async function snapshotTo(source: DatabaseTarget, into: string): Promise<void> {
  if (source.kind === 'sqlite') return snapshotDatabase(source.path, into);
  let from: ControllerDb | undefined;
  let to: ControllerDb | undefined;
  try {
    // The running controller migrated the source; migrate: false so a backup never changes it.
    from = await openDatabase(source, { create: false, migrate: false });
    to = await openDatabase(into);
    const target = to;
    await from
      .transaction()
      .setIsolationLevel('repeatable read')
      .setAccessMode('read only')
      .execute(async (trx) => {
        await target.transaction().execute((out) => copyDatabase(trx, out).then(() => undefined));
      });
    await sql`PRAGMA wal_checkpoint(TRUNCATE)`.execute(to);
  } catch (e: unknown) {
    await to?.destroy();
    to = undefined;
    await rm(into, { force: true });
    await rm(`${into}-wal`, { force: true });
    await rm(`${into}-shm`, { force: true });
    throw new ControllerError(
      ControllerErrorCode.WRITE_FAILED,
      `cannot snapshot ${describeDatabaseTarget(source)}: ${e instanceof Error ? e.message : String(e)}`,
      { cause: e },
    );
  } finally {
    await to?.destroy();
    await from?.destroy();
  }
}

/** The last audit entry of a database file (a snapshot), read on a read-only connection of its own. */
export async function auditHeadOf(path: string): Promise<{ seq: number; hash: string } | undefined> {
  const raw = await openSqlite3(path, 'readonly');
  try {
    return await new Promise((resolve, reject) =>
      raw.get<{ seq: number; hash: string }>(
        'SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1',
        (err: Error | null, row: { seq: number; hash: string } | undefined) =>
          err ? reject(err) : resolve(row),
      ),
    );
  } finally {
    await close(raw);
  }
}

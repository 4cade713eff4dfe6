import { rm } from 'node:fs/promises';
import type sqlite3 from 'sqlite3';
import { ControllerError, ControllerErrorCode } from '../errors.js';
import { DB_BUSY_TIMEOUT_MS } from './open-database.js';
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

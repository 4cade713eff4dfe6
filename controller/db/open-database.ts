import { Kysely, Migrator, type Migration } from 'kysely';
import type sqlite3 from 'sqlite3';
import { ControllerError, ControllerErrorCode } from '../errors.js';
import { MIGRATIONS } from './migrations.js';
import type { ControllerDatabase } from './schema.js';
import { openSqlite3, Sqlite3Dialect } from './sqlite3-dialect.js';

/** How long a statement waits for a lock held by another process, in ms. */
export const DB_BUSY_TIMEOUT_MS = 5_000;

export type ControllerDb = Kysely<ControllerDatabase>;

export interface OpenDatabaseOptions {
  /** Defaults to the controller's own list; tests pass their own. */
  readonly migrations?: readonly (readonly [string, Migration])[];
}

function exec(db: sqlite3.Database, text: string): Promise<void> {
  return new Promise((resolve, reject) => db.exec(text, (err) => (err ? reject(err) : resolve())));
}

/**
 * Opens the controller's SQLite file (WAL, foreign keys on, busy timeout, full fsync on
 * commit) and brings its schema up to date. Throws CORRAL_ERR_DATABASE_OPEN or
 * CORRAL_ERR_MIGRATION_FAILED naming the migration and the cause; the database is closed
 * again before either is thrown.
 */
export async function openDatabase(path: string, options: OpenDatabaseOptions = {}): Promise<ControllerDb> {
  let raw: sqlite3.Database;
  try {
    raw = await openSqlite3(path);
    raw.configure('busyTimeout', DB_BUSY_TIMEOUT_MS);
    await exec(raw, 'PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON;');
  } catch (e: unknown) {
    throw new ControllerError(
      ControllerErrorCode.DATABASE_OPEN,
      `cannot open database ${path}: ${e instanceof Error ? e.message : String(e)}`,
      { cause: e },
    );
  }
  const db = new Kysely<ControllerDatabase>({ dialect: new Sqlite3Dialect(raw) });
  try {
    await migrate(db, options.migrations ?? MIGRATIONS);
  } catch (e: unknown) {
    await db.destroy();
    throw e;
  }
  return db;
}

async function migrate(
  db: Kysely<ControllerDatabase>,
  migrations: readonly (readonly [string, Migration])[],
): Promise<void> {
  const migrator = new Migrator({
    db,
    provider: { getMigrations: async () => Object.fromEntries(migrations) },
  });
  const { error, results } = await migrator.migrateToLatest();
  if (error === undefined) return;
  const failed = results?.find((r) => r.status === 'Error');
  const cause = error instanceof Error ? error.message : JSON.stringify(error);
  throw new ControllerError(
    ControllerErrorCode.MIGRATION_FAILED,
    failed
      ? `database migration ${failed.migrationName} failed: ${cause}`
      : `database migrations cannot run: ${cause}`,
    { cause: error },
  );
}

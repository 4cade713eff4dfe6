import { open } from 'node:fs/promises';
import { Kysely, Migrator, type Migration } from 'kysely';
import type sqlite3 from 'sqlite3';
import { ControllerError, ControllerErrorCode, isControllerError } from '../errors.js';
import { toDatabaseTarget, type DatabaseTarget } from './database-target.js';
import { MIGRATIONS } from './migrations.js';
import { openPostgres, openPostgresReader } from './open-postgres.js';
import type { ControllerDatabase } from './schema.js';
import { namingFile, openSqlite3, Sqlite3Dialect } from './sqlite3-dialect.js';

/** How long a statement waits for a lock held by another process, in ms. */
export const DB_BUSY_TIMEOUT_MS = 5_000;
/** Lines of a failed integrity check quoted in the error. */
const MAX_CHECK_LINES = 5;
const SQLITE_HEADER = 'SQLite format 3\0';

export type ControllerDb = Kysely<ControllerDatabase>;

export interface OpenDatabaseOptions {
  /** Defaults to the controller's own list; tests pass their own. */
  readonly migrations?: readonly (readonly [string, Migration])[];
  /**
   * False: the file must already hold the controller's database; it is never created, and a
   * missing, empty or foreign file is CORRAL_ERR_STATE_DAMAGED. Default true (`init`).
   */
  readonly create?: boolean;
  /** Runs after the integrity check and before any migration; throws to refuse the file. */
  readonly verify?: (db: ControllerDb) => Promise<void>;
  /** False: open and check only; the caller runs migrateDatabase once it is satisfied. Default true. */
  readonly migrate?: boolean;
}

function exec(db: sqlite3.Database, text: string): Promise<void> {
  return new Promise((resolve, reject) => db.exec(text, (err) => (err ? reject(err) : resolve())));
}

function all<T>(db: sqlite3.Database, text: string): Promise<T[]> {
  return new Promise((resolve, reject) =>
    db.all<T>(text, (err, rows) => (err ? reject(err) : resolve(rows))),
  );
}

const damaged = (path: string, problem: string, cause?: unknown): ControllerError =>
  new ControllerError(ControllerErrorCode.STATE_DAMAGED, `${path} ${problem}`, {
    file: path,
    ...(cause !== undefined && { cause }),
  });

/** Size and first bytes of the file; undefined when it does not exist. */
async function peek(path: string): Promise<{ size: number; header: string } | undefined> {
  let fh;
  try {
    fh = await open(path, 'r');
  } catch (e: unknown) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw e;
  }
  try {
    const { size } = await fh.stat();
    const buf = Buffer.alloc(SQLITE_HEADER.length);
    const { bytesRead } = await fh.read(buf, 0, buf.length, 0);
    return { size, header: buf.subarray(0, bytesRead).toString('latin1') };
  } finally {
    await fh.close();
  }
}

/** Throws CORRAL_ERR_STATE_DAMAGED unless SQLite's quick_check finds the file whole. */
async function quickCheck(raw: sqlite3.Database, path: string): Promise<void> {
  let rows: { quick_check: string }[];
  try {
    rows = await all<{ quick_check: string }>(raw, 'PRAGMA quick_check');
  } catch (e: unknown) {
    throw damaged(path, `fails its integrity check: ${e instanceof Error ? e.message : String(e)}`, e);
  }
  const lines = rows.map((r) => r.quick_check);
  if (lines.length === 1 && lines[0] === 'ok') return;
  throw damaged(path, `fails its integrity check: ${lines.slice(0, MAX_CHECK_LINES).join('; ')}`);
}

async function hasTables(raw: sqlite3.Database, names: readonly string[]): Promise<boolean> {
  const rows = await all<{ name: string }>(raw, "SELECT name FROM sqlite_master WHERE type = 'table'");
  const present = new Set(rows.map((r) => r.name));
  return names.every((n) => present.has(n));
}

function closeRaw(raw: sqlite3.Database): Promise<void> {
  return new Promise((resolve) => raw.close(() => resolve()));
}

/**
 * Opens the controller's database, checks it, and (unless `migrate: false`) brings its schema
 * up to date: an SQLite file (a bare string is its path, or `sqlite:PATH`) or a PostgreSQL
 * database (`postgres://…`). Nothing above this function knows which. Throws
 * CORRAL_ERR_STATE_DAMAGED (naming the file or URL) for a damaged, missing (`create: false`)
 * or foreign database, CORRAL_ERR_DATABASE_OPEN or CORRAL_ERR_MIGRATION_FAILED naming the
 * migration and the cause; the database is closed again before any of them is thrown.
 */
export async function openDatabase(
  target: DatabaseTarget | string,
  options: OpenDatabaseOptions = {},
): Promise<ControllerDb> {
  const t = toDatabaseTarget(target);
  if (t.kind === 'sqlite') return openSqliteDatabase(t.path, options);
  const db = await openPostgres(t, { create: options.create ?? true, verify: options.verify });
  try {
    if (options.migrate ?? true) await migrateDatabase(db, options.migrations);
  } catch (e: unknown) {
    await db.destroy();
    throw e;
  }
  return db;
}

/**
 * Opens the controller's SQLite file (WAL, foreign keys on, busy timeout, full fsync on
 * commit), checks it, and brings its schema up to date. An existing file must look like
 * SQLite and pass `PRAGMA quick_check` before anything is written to it. Throws
 * CORRAL_ERR_STATE_DAMAGED (naming the file) for a damaged, missing (`create: false`) or
 * foreign one, CORRAL_ERR_DATABASE_OPEN or CORRAL_ERR_MIGRATION_FAILED naming the migration
 * and the cause; the database is closed again before any of them is thrown.
 */
async function openSqliteDatabase(path: string, options: OpenDatabaseOptions): Promise<ControllerDb> {
  const create = options.create ?? true;
  const before = await peek(path);
  if (!create && before === undefined) throw damaged(path, 'is missing');
  if (!create && before?.size === 0) throw damaged(path, 'is empty (0 bytes)');
  if (before !== undefined && before.size > 0 && before.header !== SQLITE_HEADER) {
    throw damaged(path, 'is not an SQLite database (its header is wrong)');
  }
  let raw: sqlite3.Database;
  try {
    raw = await openSqlite3(path, create);
  } catch (e: unknown) {
    throw new ControllerError(
      ControllerErrorCode.DATABASE_OPEN,
      `cannot open database ${path}: ${e instanceof Error ? e.message : String(e)}`,
      { cause: e, file: path },
    );
  }
  try {
    raw.configure('busyTimeout', DB_BUSY_TIMEOUT_MS);
    await exec(raw, 'PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON;');
    if (before !== undefined && before.size > 0) await quickCheck(raw, path);
    if (!create && !(await hasTables(raw, ['kysely_migration', 'settings']))) {
      throw damaged(path, "holds no controller data (it is not this controller's database)");
    }
  } catch (e: unknown) {
    await closeRaw(raw);
    if (isControllerError(e)) throw e;
    const named = e instanceof Error ? namingFile(e, path) : e;
    if (isControllerError(named)) throw named;
    throw new ControllerError(
      ControllerErrorCode.DATABASE_OPEN,
      `cannot open database ${path}: ${e instanceof Error ? e.message : String(e)}`,
      { cause: e, file: path },
    );
  }
  const db = new Kysely<ControllerDatabase>({ dialect: new Sqlite3Dialect(raw, path) });
  try {
    await options.verify?.(db);
    if (options.migrate ?? true) await migrateDatabase(db, options.migrations);
  } catch (e: unknown) {
    await db.destroy();
    throw e;
  }
  return db;
}

/**
 * A second, read-only connection to a database `openDatabase` already opened (WAL), for
 * admin reads: in WAL mode readers and the writer do not block each other, so a long host
 * list or scrape never makes heartbeat commits wait behind it, and each statement sees the
 * last committed state. Writes through it fail (`query_only`, and the file is opened
 * read-only). On PostgreSQL, a small pool whose transactions are all read-only. Throws
 * CORRAL_ERR_DATABASE_OPEN.
 */
export async function openReadConnection(target: DatabaseTarget | string): Promise<ControllerDb> {
  const t = toDatabaseTarget(target);
  if (t.kind === 'postgres') return openPostgresReader(t);
  const path = t.path;
  let raw: sqlite3.Database | undefined;
  try {
    raw = await openSqlite3(path, 'readonly');
    raw.configure('busyTimeout', DB_BUSY_TIMEOUT_MS);
    await exec(raw, 'PRAGMA query_only = ON;');
  } catch (e: unknown) {
    if (raw) await closeRaw(raw);
    throw new ControllerError(
      ControllerErrorCode.DATABASE_OPEN,
      `cannot open a read connection to ${path}: ${e instanceof Error ? e.message : String(e)}`,
      { cause: e, file: path },
    );
  }
  return new Kysely<ControllerDatabase>({ dialect: new Sqlite3Dialect(raw, path) });
}

/** Brings the schema up to date; throws CORRAL_ERR_MIGRATION_FAILED naming the migration. */
export async function migrateDatabase(
  db: Kysely<ControllerDatabase>,
  migrations: readonly (readonly [string, Migration])[] = MIGRATIONS,
): Promise<void> {
  const migrator = new Migrator({
    db,
    provider: { getMigrations: async () => Object.fromEntries(migrations) },
  });
  const { error, results } = await migrator.migrateToLatest();
  if (error === undefined) return;
  if (isControllerError(error, ControllerErrorCode.STATE_DAMAGED)) throw error;
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

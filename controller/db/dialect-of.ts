import { PostgresAdapter, SqliteAdapter, type QueryExecutorProvider } from 'kysely';
import { ControllerError, ControllerErrorCode } from '../errors.js';
import type { DatabaseKind } from './database-target.js';

/**
 * Which SQL the database behind `db` speaks, for the few statements written per dialect
 * (triggers, identity columns, casts, locks). Throws CORRAL_ERR_UNSUPPORTED for any other.
 */
export function dialectOf(db: QueryExecutorProvider): DatabaseKind {
  const adapter = db.getExecutor().adapter;
  if (adapter instanceof SqliteAdapter) return 'sqlite';
  if (adapter instanceof PostgresAdapter) return 'postgres';
  throw new ControllerError(
    ControllerErrorCode.UNSUPPORTED,
    'the controller runs on SQLite or PostgreSQL only',
  );
}

/** SQLite's extended result codes are not exposed by the sqlite3 driver; its primary code is. */
const SQLITE_CONSTRAINT = 'SQLITE_CONSTRAINT';
/** PostgreSQL's SQLSTATE for unique_violation. */
const PG_UNIQUE_VIOLATION = '23505';

/**
 * True for a unique (or primary-key) violation, from the driver's error code: PostgreSQL's
 * SQLSTATE 23505; on SQLite the driver gives only the primary code SQLITE_CONSTRAINT (never
 * SQLITE_CONSTRAINT_UNIQUE), so the kind of constraint is read from SQLite's own fixed
 * wording of it, which distinguishes it from NOT NULL, CHECK, foreign-key and trigger failures.
 */
export function isUniqueViolation(e: unknown): boolean {
  if (!(e instanceof Error)) return false;
  const code = (e as { code?: unknown }).code;
  if (code === PG_UNIQUE_VIOLATION) return true;
  return code === SQLITE_CONSTRAINT && /\b(?:UNIQUE|PRIMARY KEY) constraint failed\b/.test(e.message);
}

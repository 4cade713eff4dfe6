import { Kysely, sql } from 'kysely';
import type pg from 'pg';
import { ControllerError, ControllerErrorCode, isControllerError } from '../errors.js';
import { describeDatabaseTarget, type DatabaseTarget } from './database-target.js';
import type { ControllerDatabase } from './schema.js';
import { createPostgresPool, postgresDialect, WideIntegersPlugin } from './postgres-dialect.js';

type PostgresTarget = Extract<DatabaseTarget, { kind: 'postgres' }>;

/**
 * Writer connections: one, as SQLite has one writer. The controller's transactions were
 * written against SQLite's `begin immediate`, which serializes them; one connection keeps
 * that guarantee inside a process. What must also hold against other processes on the same
 * database (the audit chain's append, the fleet events' cursor order) takes a lock of its own
 * (see lockOrderedAppend).
 */
const WRITER_CONNECTIONS = 1;
/** Read connections for admin reads (host lists, scrapes) beside the writer. */
const READER_CONNECTIONS = 4;

const cannotOpen = (target: PostgresTarget, e: unknown): ControllerError =>
  new ControllerError(
    ControllerErrorCode.DATABASE_OPEN,
    `cannot open database ${describeDatabaseTarget(target)}: ${e instanceof Error ? e.message : String(e)}`,
    { cause: e },
  );

/** Opens a pool and proves it can reach the server; throws CORRAL_ERR_DATABASE_OPEN. */
async function reach(target: PostgresTarget, pool: pg.Pool): Promise<void> {
  try {
    const client = await pool.connect();
    client.release();
  } catch (e: unknown) {
    await pool.end().catch(() => undefined /* never connected: nothing to close */);
    throw cannotOpen(target, e);
  }
}

async function hasTables(db: Kysely<ControllerDatabase>, names: readonly string[]): Promise<boolean> {
  const { rows } = await sql<{ name: string }>`SELECT table_name AS name FROM information_schema.tables
    WHERE table_schema = current_schema()`.execute(db);
  const present = new Set(rows.map((r) => r.name));
  return names.every((n) => present.has(n));
}

export interface PostgresOpenOptions {
  readonly create: boolean;
  readonly verify: ((db: Kysely<ControllerDatabase>) => Promise<void>) | undefined;
}

/**
 * The controller's PostgreSQL database (its current schema), reachable and, unless
 * `create`, already holding the controller's tables (else CORRAL_ERR_STATE_DAMAGED naming
 * the URL without its password). The caller migrates.
 */
export async function openPostgres(
  target: PostgresTarget,
  o: PostgresOpenOptions,
): Promise<Kysely<ControllerDatabase>> {
  const pool = createPostgresPool(target.url, { max: WRITER_CONNECTIONS, name: 'corral-controller' });
  await reach(target, pool);
  const db = new Kysely<ControllerDatabase>({
    dialect: postgresDialect(pool),
    plugins: [new WideIntegersPlugin()],
  });
  try {
    if (!o.create && !(await hasTables(db, ['kysely_migration', 'settings']))) {
      const where = describeDatabaseTarget(target);
      throw new ControllerError(
        ControllerErrorCode.STATE_DAMAGED,
        `${where} holds no controller data (it is not this controller's database)`,
        { file: where },
      );
    }
    await o.verify?.(db);
  } catch (e: unknown) {
    await db.destroy();
    if (isControllerError(e)) throw e;
    throw cannotOpen(target, e);
  }
  return db;
}

/** Read-only connections (every transaction read-only) to the same database, for admin reads. */
export async function openPostgresReader(target: PostgresTarget): Promise<Kysely<ControllerDatabase>> {
  const pool = createPostgresPool(target.url, {
    max: READER_CONNECTIONS,
    readOnly: true,
    name: 'corral-controller-reader',
  });
  await reach(target, pool);
  return new Kysely<ControllerDatabase>({
    dialect: postgresDialect(pool),
    plugins: [new WideIntegersPlugin()],
  });
}

import { sql, type Kysely } from 'kysely';
import { ControllerError, ControllerErrorCode } from '../errors.js';
import { dialectOf } from './dialect-of.js';
import type { ControllerDatabase } from './schema.js';

type Db = Kysely<ControllerDatabase>;
type Row = Record<string, unknown>;

/** Rows read per page. */
const PAGE_ROWS = 1000;
/** Parameters per INSERT at most (SQLite allows 32,766, PostgreSQL 65,535). */
const MAX_INSERT_PARAMS = 30_000;
/** Tables other rows point at (foreign keys): copied first. */
const PARENT_TABLES = ['settings', 'hosts', 'operations'];
/** The key columns that take their values from a counter (AUTOINCREMENT / identity). */
const COUNTERS: Readonly<Record<string, string>> = { fleet_events: 'cursor', webhook_deliveries: 'id' };

/** The controller's tables (not the migrator's own), sorted so parents come first. */
async function tablesOf(db: Db): Promise<string[]> {
  const { rows } =
    dialectOf(db) === 'sqlite'
      ? await sql<{ name: string }>`SELECT name FROM sqlite_master
          WHERE type = 'table' AND name NOT LIKE 'sqlite_%'`.execute(db)
      : await sql<{ name: string }>`SELECT table_name AS name FROM information_schema.tables
          WHERE table_schema = current_schema() AND table_type = 'BASE TABLE'`.execute(db);
  const names = rows.map((r) => r.name).filter((n) => !n.startsWith('kysely_migration'));
  const rank = (n: string): number => {
    const i = PARENT_TABLES.indexOf(n);
    return i === -1 ? PARENT_TABLES.length : i;
  };
  return names.sort((a, b) => rank(a) - rank(b) || a.localeCompare(b));
}

async function migrationsOf(db: Db): Promise<string[]> {
  const { rows } = await sql<{ name: string }>`SELECT name FROM kysely_migration ORDER BY name`.execute(db);
  return rows.map((r) => r.name);
}

/** The last value `table`'s counter handed out (0 when none), which outlives deleted rows. */
async function counterHead(db: Db, table: string, column: string): Promise<number> {
  if (dialectOf(db) === 'sqlite') {
    const { rows } = await sql<{
      seq: number;
    }>`SELECT seq FROM sqlite_sequence WHERE name = ${table}`.execute(db);
    return Number(rows[0]?.seq ?? 0);
  }
  const { rows } = await sql<{ seq: number | null }>`SELECT pg_sequence_last_value(
      pg_get_serial_sequence(${table}, ${column})::regclass) AS seq`.execute(db);
  return Number(rows[0]?.seq ?? 0);
}

async function setCounterHead(db: Db, table: string, column: string, head: number): Promise<void> {
  if (head <= 0) return;
  if (dialectOf(db) === 'sqlite') {
    const { rows } = await sql<{
      n: number;
    }>`SELECT count(*) AS n FROM sqlite_sequence WHERE name = ${table}`.execute(db);
    if (Number(rows[0]?.n ?? 0) === 0) {
      await sql`INSERT INTO sqlite_sequence (name, seq) VALUES (${table}, ${head})`.execute(db);
    } else {
      await sql`UPDATE sqlite_sequence SET seq = ${head} WHERE name = ${table}`.execute(db);
    }
    return;
  }
  await sql`SELECT setval(pg_get_serial_sequence(${table}, ${column}), ${head})`.execute(db);
}

/** One page of `table` in a stable order (the row's physical id, fixed within one snapshot). */
async function page(db: Db, table: string, offset: number): Promise<Row[]> {
  const order = sql.raw(dialectOf(db) === 'sqlite' ? 'rowid' : 'ctid');
  const { rows } = await sql<Row>`SELECT * FROM ${sql.table(table)} ORDER BY ${order}
    LIMIT ${PAGE_ROWS} OFFSET ${offset}`.execute(db);
  return rows;
}

async function insertRows(db: Db, table: string, rows: readonly Row[]): Promise<void> {
  const first = rows[0];
  if (first === undefined) return;
  const columns = Object.keys(first);
  const perInsert = Math.max(1, Math.floor(MAX_INSERT_PARAMS / Math.max(1, columns.length)));
  for (let i = 0; i < rows.length; i += perInsert) {
    const chunk = rows.slice(i, i + perInsert);
    const values = sql.join(chunk.map((r) => sql`(${sql.join(columns.map((c) => r[c] ?? null))})`));
    await sql`INSERT INTO ${sql.table(table)} (${sql.join(columns.map((c) => sql.ref(c)))})
      VALUES ${values}`.execute(db);
  }
}

/**
 * Copies every row of the controller's tables from `from` into `to` (either dialect to
 * either), and the counters of AUTOINCREMENT / identity keys, so fleet-event cursors keep
 * growing from where they were. Both must hold the same schema (the same migrations applied)
 * and `to` no rows; `from` should be one consistent snapshot (a repeatable-read transaction
 * on PostgreSQL, one read transaction on SQLite) and `to` one transaction, so the copy is
 * all or nothing. Throws CORRAL_ERR_STATE_INVALID when the schemas differ or `to` holds rows.
 * Returns the rows copied per table.
 */
export async function copyDatabase(from: Db, to: Db): Promise<Record<string, number>> {
  const [fromMigrations, toMigrations] = [await migrationsOf(from), await migrationsOf(to)];
  if (fromMigrations.join(',') !== toMigrations.join(',')) {
    throw new ControllerError(
      ControllerErrorCode.STATE_INVALID,
      `the databases hold different schemas (${fromMigrations.at(-1) ?? 'none'} and ${toMigrations.at(-1) ?? 'none'})`,
    );
  }
  const tables = await tablesOf(from);
  const theirs = new Set(await tablesOf(to));
  const copied: Record<string, number> = {};
  for (const table of tables) {
    if (!theirs.has(table)) {
      throw new ControllerError(
        ControllerErrorCode.STATE_INVALID,
        `the target database has no table ${table}`,
      );
    }
    const { rows } = await sql<{ n: number }>`SELECT count(*) AS n FROM ${sql.table(table)}`.execute(to);
    if (Number(rows[0]?.n ?? 0) > 0) {
      throw new ControllerError(
        ControllerErrorCode.STATE_INVALID,
        `the target database is not empty (table ${table} has rows)`,
      );
    }
  }
  for (const table of tables) {
    let n = 0;
    for (let offset = 0; ; offset += PAGE_ROWS) {
      const rows = await page(from, table, offset);
      await insertRows(to, table, rows);
      n += rows.length;
      if (rows.length < PAGE_ROWS) break;
    }
    copied[table] = n;
    const counter = COUNTERS[table];
    if (counter !== undefined)
      await setCounterHead(to, table, counter, await counterHead(from, table, counter));
  }
  return copied;
}

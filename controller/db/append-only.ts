import { sql, type Kysely } from 'kysely';
import { dialectOf } from './dialect-of.js';

/**
 * Makes `table` append-only: an UPDATE or DELETE (and on PostgreSQL a TRUNCATE) of it fails
 * with "<what> is append-only". On SQLite two triggers raise ABORT (these statements are the
 * ones shipped migrations always ran, so existing files are unchanged); on PostgreSQL one
 * PL/pgSQL function, `corral_append_only`, raises for every such table.
 */
export async function makeAppendOnly(
  db: Kysely<unknown>,
  table: 'audit' | 'operation_log',
  what: string,
): Promise<void> {
  if (dialectOf(db) === 'sqlite') {
    const message = sql.lit(`${what} is append-only`);
    await sql`CREATE TRIGGER ${sql.raw(`${table}_no_update`)} BEFORE UPDATE ON ${sql.raw(table)}
    BEGIN SELECT RAISE(ABORT, ${message}); END`.execute(db);
    await sql`CREATE TRIGGER ${sql.raw(`${table}_no_delete`)} BEFORE DELETE ON ${sql.raw(table)}
    BEGIN SELECT RAISE(ABORT, ${message}); END`.execute(db);
    return;
  }
  await sql`CREATE OR REPLACE FUNCTION corral_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
      RAISE EXCEPTION '% is append-only', TG_ARGV[0] USING ERRCODE = 'restrict_violation';
    END
    $$`.execute(db);
  const name = sql.lit(what);
  await sql`CREATE TRIGGER ${sql.raw(`${table}_no_change`)} BEFORE UPDATE OR DELETE ON ${sql.raw(table)}
    FOR EACH ROW EXECUTE FUNCTION corral_append_only(${name})`.execute(db);
  await sql`CREATE TRIGGER ${sql.raw(`${table}_no_truncate`)} BEFORE TRUNCATE ON ${sql.raw(table)}
    FOR EACH STATEMENT EXECUTE FUNCTION corral_append_only(${name})`.execute(db);
}

import { sql, type QueryExecutorProvider } from 'kysely';
import { dialectOf } from './dialect-of.js';

/**
 * The advisory lock key of the ordered appends (any fixed 64-bit number of our own): the
 * audit chain and the fleet events share it, so a transaction appending to both never waits
 * for one while holding the other in the opposite order of another transaction.
 */
const ORDERED_APPEND_LOCK_KEY = 0x636f7272616c01n;

/**
 * Holds the ordered appends' lock until `trx` ends, so that no other writer (another
 * connection, another controller process) appends to the audit chain or the fleet events in
 * between:
 * - the audit chain: between reading the last entry and inserting the next, so `seq` stays
 *   gapless and each `prev_hash` names its predecessor;
 * - the fleet events: a cursor is taken and committed before the next one is taken, so
 *   cursors become visible in their order and a reader reading past cursor N never misses
 *   an N-1 that commits later (readers keep their place by cursor).
 *
 * SQLite's `begin immediate` already holds the database's only write lock; PostgreSQL takes a
 * transaction-scoped advisory lock.
 */
export async function lockOrderedAppend(trx: QueryExecutorProvider): Promise<void> {
  if (dialectOf(trx) === 'sqlite') return;
  await sql`SELECT pg_advisory_xact_lock(${sql.lit(ORDERED_APPEND_LOCK_KEY.toString())}::bigint)`.execute(
    trx,
  );
}

import { sql, type QueryExecutorProvider } from 'kysely';
import { dialectOf } from './dialect-of.js';

/** The advisory lock key of the audit chain's append (any fixed 64-bit number of our own). */
const AUDIT_CHAIN_LOCK_KEY = 0x636f7272616c01n;

/**
 * Holds the audit chain's append lock until `trx` ends, so that between reading the last
 * entry and inserting the next no other writer (another connection, another controller
 * process) appends: `seq` stays gapless and each `prev_hash` names its predecessor. SQLite's
 * `begin immediate` already holds the database's only write lock; PostgreSQL takes a
 * transaction-scoped advisory lock.
 */
export async function lockAuditChain(trx: QueryExecutorProvider): Promise<void> {
  if (dialectOf(trx) === 'sqlite') return;
  await sql`SELECT pg_advisory_xact_lock(${sql.lit(AUDIT_CHAIN_LOCK_KEY.toString())}::bigint)`.execute(trx);
}

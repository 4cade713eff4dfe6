import type { Kysely } from 'kysely';

/**
 * Lifecycle events by the time they were received, so pruning by age finds the old ones
 * across the whole fleet from an index, in a few statements, not a few per host.
 */
export async function eventAgeMigration(db: Kysely<unknown>): Promise<void> {
  await db.schema.createIndex('events_received').on('events').columns(['received_at']).execute();
}

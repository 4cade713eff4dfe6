import { sql, type Kysely } from 'kysely';

/**
 * What enrollment records beyond the host row: the address a join actually came from
 * (`join_source`, beside the address the worker claimed), and when the worker's bundle was
 * confirmed written (`bundle_written_at`), which with `last_seen` tells a host whose
 * enrollment was cut short (`enroll --replace` may take its name over) from one in use.
 * Hosts enrolled before this migration count as written: nothing is known about them, so
 * none becomes replaceable by accident.
 */
export async function enrollmentMigration(db: Kysely<unknown>): Promise<void> {
  await db.schema.alterTable('hosts').addColumn('join_source', 'text').execute();
  await db.schema.alterTable('hosts').addColumn('bundle_written_at', 'text').execute();
  await sql`UPDATE hosts SET bundle_written_at = enrolled_at`.execute(db);
}

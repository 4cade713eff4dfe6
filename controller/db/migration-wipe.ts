import { sql, type Kysely } from 'kysely';

/**
 * What decommission keeps so that a host which was offline at the time still learns it:
 * the pins active when it was decommissioned stay, marked `decommissioned` (they never match
 * as active pins again; only that host's own certificate is told it is decommissioned), and
 * `hosts.wiped_at` / `hosts.wipe_report` record the worker's report that it wiped itself.
 * Pins of hosts decommissioned before this migration are the ones retired in the same
 * transaction as the decommission (same time), so they are marked too.
 */
export async function wipeMigration(db: Kysely<unknown>): Promise<void> {
  await db.schema
    .alterTable('pins')
    .addColumn('decommissioned', 'integer', (c) => c.notNull().defaultTo(0))
    .execute();
  await db.schema.alterTable('hosts').addColumn('wiped_at', 'text').execute();
  await db.schema.alterTable('hosts').addColumn('wipe_report', 'text').execute();
  await sql`UPDATE pins SET decommissioned = 1 WHERE active = 0 AND retired_at IS NOT NULL AND
    retired_at = (SELECT decommissioned_at FROM hosts WHERE hosts.id = pins.host_id)`.execute(db);
}

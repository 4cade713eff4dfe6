import type { Kysely } from 'kysely';

/**
 * Where each running controller is reached, so a bundle written by one lists them all: one row
 * per controller process (its cluster id, new every start), written when it starts serving.
 * Rows of controllers no longer connected to the database are ignored, and pruned by the
 * next controller that starts.
 */
export async function controllerAddressesMigration(db: Kysely<unknown>): Promise<void> {
  await db.schema
    .createTable('controller_addresses')
    .addColumn('controller_id', 'text', (c) => c.primaryKey())
    .addColumn('worker', 'text', (c) => c.notNull())
    .addColumn('syslog', 'text')
    .addColumn('started_at', 'text', (c) => c.notNull())
    .execute();
}

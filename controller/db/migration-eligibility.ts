import type { Kysely } from 'kysely';

/**
 * Host eligibility. `hosts.eligible` 0: the host takes no new instances (it keeps the ones it
 * has unless it is draining); `hosts.drain_deadline` set: the host is draining, its instances
 * move away (each stopped there once its replacement runs, or at the deadline, whichever
 * comes first); cleared by the scheduler once nothing is left on it (the host stays
 * ineligible). `service_retries` counts the controller's retries of a service its agent gave
 * up on (see failed-retries.ts).
 */
export async function eligibilityMigration(db: Kysely<unknown>): Promise<void> {
  await db.schema
    .alterTable('hosts')
    .addColumn('eligible', 'integer', (c) => c.notNull().defaultTo(1))
    .execute();
  await db.schema.alterTable('hosts').addColumn('drain_deadline', 'text').execute();
  await db.schema
    .createTable('service_retries')
    .addColumn('host_id', 'text', (c) => c.notNull())
    .addColumn('service', 'text', (c) => c.notNull())
    .addColumn('attempts', 'integer', (c) => c.notNull())
    .addColumn('failed_at', 'text', (c) => c.notNull())
    .addColumn('escalated_at', 'text')
    .addColumn('reason', 'text')
    .addPrimaryKeyConstraint('service_retries_pk', ['host_id', 'service'])
    .execute();
}

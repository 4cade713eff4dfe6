import { sql, type Kysely } from 'kysely';

/**
 * Scheduling state. `deployment_services` is the spec of the last deploy (what the scheduler
 * re-places when hosts come, go or get lost); `pending_instances` are instances no host could
 * take at the last placement, with the reason. An every-host service runs one instance of the
 * same name on many hosts, so a service name is no longer unique in `desired_services`.
 * Services deployed before this migration get a spec rebuilt from what their host runs (no
 * placement constraint: it was not kept).
 */
export async function schedulingMigration(db: Kysely<unknown>): Promise<void> {
  await db.schema
    .createTable('deployment_services')
    .addColumn('name', 'text', (c) => c.primaryKey())
    .addColumn('position', 'integer', (c) => c.notNull())
    .addColumn('spec', 'text', (c) => c.notNull())
    .addColumn('updated_at', 'text', (c) => c.notNull())
    .execute();
  await db.schema
    .createTable('pending_instances')
    .addColumn('instance', 'text', (c) => c.primaryKey())
    .addColumn('service', 'text', (c) => c.notNull())
    .addColumn('reason', 'text', (c) => c.notNull())
    .addColumn('since', 'text', (c) => c.notNull())
    .execute();
  await db.schema.dropIndex('desired_services_service').execute();
  await db.schema
    .createIndex('desired_services_by_service')
    .on('desired_services')
    .column('service')
    .execute();
  // The agent's spec (same fields) is a deployment service with every default written out.
  await sql`INSERT INTO deployment_services (name, position, spec, updated_at)
    SELECT service, ROW_NUMBER() OVER (ORDER BY service), spec, updated_at
    FROM desired_services`.execute(db);
}

import type { Kysely } from 'kysely';

/**
 * What runs each observed service, as its agent reports it: the runtime kind, a container's
 * image and container id. Null for rows written before, and for agents that do not send them.
 */
export async function serviceRuntimeMigration(db: Kysely<unknown>): Promise<void> {
  await db.schema.alterTable('service_observed').addColumn('runtime', 'text').execute();
  await db.schema.alterTable('service_observed').addColumn('image', 'text').execute();
  await db.schema.alterTable('service_observed').addColumn('container_id', 'text').execute();
}

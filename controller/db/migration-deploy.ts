import type { Kysely } from 'kysely';
import { makeAppendOnly } from './append-only.js';

/**
 * Deploy state: desired services per host, each host's desired generation, what the last
 * dispatch of each service did, and operations with per-host steps and an append-only log.
 */
export async function deployMigration(db: Kysely<unknown>): Promise<void> {
  await db.schema
    .createTable('desired_services')
    .addColumn('host_id', 'text', (c) => c.notNull().references('hosts.id'))
    .addColumn('service', 'text', (c) => c.notNull())
    .addColumn('spec', 'text', (c) => c.notNull())
    .addColumn('spec_hash', 'text', (c) => c.notNull())
    .addColumn('updated_at', 'text', (c) => c.notNull())
    .addPrimaryKeyConstraint('desired_services_pk', ['host_id', 'service'])
    .execute();
  // Placement puts each service on exactly one host.
  await db.schema
    .createIndex('desired_services_service')
    .on('desired_services')
    .column('service')
    .unique()
    .execute();

  await db.schema
    .createTable('host_desired')
    .addColumn('host_id', 'text', (c) => c.primaryKey().references('hosts.id'))
    .addColumn('generation', 'integer', (c) => c.notNull())
    .addColumn('set_hash', 'text', (c) => c.notNull())
    .addColumn('acked_generation', 'integer', (c) => c.notNull().defaultTo(0))
    .addColumn('updated_at', 'text', (c) => c.notNull())
    .execute();

  await db.schema
    .createTable('service_dispatch')
    .addColumn('host_id', 'text', (c) => c.notNull().references('hosts.id'))
    .addColumn('service', 'text', (c) => c.notNull())
    .addColumn('desired', 'text', (c) => c.notNull())
    .addColumn('state', 'text', (c) => c.notNull())
    .addColumn('reason', 'text')
    .addColumn('generation', 'integer', (c) => c.notNull())
    .addColumn('updated_at', 'text', (c) => c.notNull())
    .addPrimaryKeyConstraint('service_dispatch_pk', ['host_id', 'service'])
    .execute();

  await db.schema
    .createTable('operations')
    .addColumn('id', 'text', (c) => c.primaryKey())
    .addColumn('kind', 'text', (c) => c.notNull())
    .addColumn('state', 'text', (c) => c.notNull())
    .addColumn('actor', 'text', (c) => c.notNull())
    .addColumn('target', 'text', (c) => c.notNull())
    .addColumn('created_at', 'text', (c) => c.notNull())
    .addColumn('finished_at', 'text')
    .addColumn('reason', 'text')
    .addColumn('summary', 'text', (c) => c.notNull())
    .execute();
  await db.schema.createIndex('operations_created').on('operations').column('created_at').execute();
  await db.schema.createIndex('operations_state').on('operations').column('state').execute();

  await db.schema
    .createTable('operation_steps')
    .addColumn('operation_id', 'text', (c) => c.notNull().references('operations.id'))
    .addColumn('host_id', 'text', (c) => c.notNull())
    .addColumn('host_name', 'text', (c) => c.notNull())
    .addColumn('state', 'text', (c) => c.notNull())
    .addColumn('generation', 'integer')
    .addColumn('services', 'integer', (c) => c.notNull())
    .addColumn('detail', 'text')
    .addColumn('started_at', 'text')
    .addColumn('finished_at', 'text')
    .addPrimaryKeyConstraint('operation_steps_pk', ['operation_id', 'host_id'])
    .execute();

  await db.schema
    .createTable('operation_log')
    .addColumn('operation_id', 'text', (c) => c.notNull().references('operations.id'))
    .addColumn('seq', 'integer', (c) => c.notNull())
    .addColumn('time', 'text', (c) => c.notNull())
    .addColumn('level', 'text', (c) => c.notNull())
    .addColumn('host', 'text')
    .addColumn('message', 'text', (c) => c.notNull())
    .addPrimaryKeyConstraint('operation_log_pk', ['operation_id', 'seq'])
    .execute();
  await makeAppendOnly(db, 'operation_log', 'operation log');
}

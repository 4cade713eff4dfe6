import { sql, type Kysely } from 'kysely';

/**
 * What `/metrics` counts, each from an index and none joined row by row to the fleet:
 * services in any state but `running` (`service_observed_unusual`, partial: it holds only
 * those rows, so no query asking for running services is planned over it, and a heartbeat
 * that keeps a service running never touches it), the ids of decommissioned hosts
 * (`hosts_decommissioned`, whose services are then taken off), and operations by kind and
 * outcome (`operations_kind_state`). Before, the services count looked up the host of every
 * service row (or every host for its services), about a second at 60k hosts with three
 * services each.
 */
export async function fleetCountsMigration(db: Kysely<unknown>): Promise<void> {
  await db.schema
    .createIndex('service_observed_unusual')
    .on('service_observed')
    .column('state')
    .where(sql.ref('state'), '<>', sql.lit('running'))
    .execute();
  await db.schema
    .createIndex('hosts_decommissioned')
    .on('hosts')
    .columns(['decommissioned_at', 'id'])
    .execute();
  await db.schema.createIndex('operations_kind_state').on('operations').columns(['kind', 'state']).execute();
}

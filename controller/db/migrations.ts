import { sql, type Kysely, type Migration } from 'kysely';
import { makeAppendOnly } from './append-only.js';
import { deployMigration } from './migration-deploy.js';
import { enrollmentMigration } from './migration-enrollment.js';
import { wipeMigration } from './migration-wipe.js';
import { fleetEventsMigration } from '../events/migration-events.js';
import { schedulingMigration } from './migration-scheduling.js';
import { operatorsMigration } from './migration-operators.js';
import { eligibilityMigration } from './migration-eligibility.js';
import { webSessionsMigration } from './migration-web-sessions.js';
import { serviceRuntimeMigration } from './migration-service-runtime.js';
import { rolloutsMigration } from './migration-rollouts.js';
import { eventAgeMigration } from './migration-event-age.js';
import { operationOwnerMigration } from './migration-operation-owner.js';
import { controllerAddressesMigration } from './migration-controller-addresses.js';
import { fleetCountsMigration } from './migration-fleet-counts.js';

/**
 * The controller's schema, as an ordered list: append new migrations at the end with the
 * next number and never edit a shipped one. Names sort in application order.
 */
export const MIGRATIONS: readonly (readonly [name: string, migration: Migration])[] = [
  ['0001-fleet', { up: fleet }],
  ['0002-audit', { up: audit }],
  ['0003-deploy', { up: deployMigration }],
  ['0004-enrollment', { up: enrollmentMigration }],
  ['0005-event-retention', { up: eventRetention }],
  ['0006-host-paging', { up: hostPaging }],
  ['0007-decommission-wipe', { up: wipeMigration }],
  ['0010-fleet-events', { up: fleetEventsMigration }],
  ['0012-operators', { up: operatorsMigration }],
  ['0013-scheduling', { up: schedulingMigration }],
  ['0014-eligibility', { up: eligibilityMigration }],
  ['0016-web-sessions', { up: webSessionsMigration }],
  ['0017-service-runtime', { up: serviceRuntimeMigration }],
  ['0018-rollouts', { up: rolloutsMigration }],
  ['0019-event-age', { up: eventAgeMigration }],
  ['0020-operation-owner', { up: operationOwnerMigration }],
  ['0021-controller-addresses', { up: controllerAddressesMigration }],
  ['0022-fleet-counts', { up: fleetCountsMigration }],
];

async function fleet(db: Kysely<unknown>): Promise<void> {
  await db.schema
    .createTable('hosts')
    .addColumn('id', 'text', (c) => c.primaryKey())
    .addColumn('name', 'text', (c) => c.notNull())
    .addColumn('address', 'text', (c) => c.notNull())
    .addColumn('agent_port', 'integer', (c) => c.notNull())
    .addColumn('updater_port', 'integer', (c) => c.notNull())
    .addColumn('sans', 'text', (c) => c.notNull().defaultTo('[]'))
    .addColumn('labels', 'text', (c) => c.notNull().defaultTo('{}'))
    .addColumn('enrolled_at', 'text', (c) => c.notNull())
    .addColumn('enrolled_via', 'text', (c) => c.notNull())
    .addColumn('last_seen', 'text')
    .addColumn('agent_version', 'text')
    .addColumn('generation', 'integer', (c) => c.notNull().defaultTo(0))
    .addColumn('metrics', 'text')
    .addColumn('decommissioned_at', 'text')
    .execute();
  // Names are unique among hosts that are not decommissioned, so a name can be enrolled again.
  await db.schema
    .createIndex('hosts_active_name')
    .on('hosts')
    .column('name')
    .unique()
    .where(sql.ref('decommissioned_at'), 'is', null)
    .execute();

  await db.schema
    .createTable('pins')
    .addColumn('fingerprint', 'text', (c) => c.primaryKey())
    .addColumn('host_id', 'text', (c) => c.notNull().references('hosts.id'))
    .addColumn('role', 'text', (c) => c.notNull())
    .addColumn('not_after', 'text', (c) => c.notNull())
    .addColumn('active', 'integer', (c) => c.notNull())
    .addColumn('created_at', 'text', (c) => c.notNull())
    .addColumn('superseded_at', 'text')
    .addColumn('retired_at', 'text')
    .execute();
  await db.schema.createIndex('pins_host').on('pins').columns(['host_id', 'role']).execute();

  await db.schema
    .createTable('join_tokens')
    .addColumn('id', 'text', (c) => c.primaryKey())
    .addColumn('name', 'text', (c) => c.notNull())
    .addColumn('hash', 'text', (c) => c.notNull().unique())
    .addColumn('labels', 'text', (c) => c.notNull().defaultTo('{}'))
    .addColumn('created_at', 'text', (c) => c.notNull())
    .addColumn('expires_at', 'text', (c) => c.notNull())
    .addColumn('used_at', 'text')
    .addColumn('revoked_at', 'text')
    .addColumn('host_id', 'text', (c) => c.references('hosts.id'))
    .execute();

  await db.schema
    .createTable('service_observed')
    .addColumn('host_id', 'text', (c) => c.notNull().references('hosts.id'))
    .addColumn('service', 'text', (c) => c.notNull())
    .addColumn('state', 'text', (c) => c.notNull())
    .addColumn('restarts', 'integer', (c) => c.notNull())
    .addColumn('last_error', 'text')
    .addColumn('pid', 'integer')
    .addColumn('since', 'text')
    .addColumn('updated_at', 'text', (c) => c.notNull())
    .addPrimaryKeyConstraint('service_observed_pk', ['host_id', 'service'])
    .execute();

  await db.schema
    .createTable('events')
    .addColumn('host_id', 'text', (c) => c.notNull().references('hosts.id'))
    .addColumn('event_id', 'text', (c) => c.notNull())
    .addColumn('type', 'text', (c) => c.notNull())
    .addColumn('time', 'text', (c) => c.notNull())
    .addColumn('service', 'text')
    .addColumn('generation', 'integer')
    .addColumn('operation_id', 'text')
    .addColumn('detail', 'text')
    .addColumn('received_at', 'text', (c) => c.notNull())
    .addPrimaryKeyConstraint('events_pk', ['host_id', 'event_id'])
    .execute();

  await db.schema
    .createTable('admin_tokens')
    .addColumn('id', 'text', (c) => c.primaryKey())
    .addColumn('name', 'text', (c) => c.notNull())
    .addColumn('hash', 'text', (c) => c.notNull().unique())
    .addColumn('created_at', 'text', (c) => c.notNull())
    .addColumn('revoked_at', 'text')
    .execute();

  await db.schema
    .createTable('settings')
    .addColumn('key', 'text', (c) => c.primaryKey())
    .addColumn('value', 'text', (c) => c.notNull())
    .execute();
}

async function audit(db: Kysely<unknown>): Promise<void> {
  await db.schema
    .createTable('audit')
    .addColumn('seq', 'integer', (c) => c.primaryKey())
    .addColumn('time', 'text', (c) => c.notNull())
    .addColumn('actor', 'text', (c) => c.notNull())
    .addColumn('action', 'text', (c) => c.notNull())
    .addColumn('target', 'text', (c) => c.notNull())
    .addColumn('details', 'text', (c) => c.notNull())
    .addColumn('prev_hash', 'text', (c) => c.notNull())
    .addColumn('hash', 'text', (c) => c.notNull())
    .execute();
  await makeAppendOnly(db, 'audit', 'audit log');
}

/** Events are pruned per host by age and count, and read newest first per host. */
async function eventRetention(db: Kysely<unknown>): Promise<void> {
  await db.schema
    .createIndex('events_host_received')
    .on('events')
    .columns(['host_id', 'received_at', 'event_id'])
    .execute();
}

/**
 * The host list is read a page at a time in (name, enrolled_at, id) order, and /metrics
 * counts hosts by status from (decommissioned_at, last_seen) alone: both from an index, so
 * neither reads the host rows' metrics and labels nor sorts the fleet.
 */
async function hostPaging(db: Kysely<unknown>): Promise<void> {
  await db.schema
    .createIndex('hosts_list_order')
    .on('hosts')
    .columns(['name', 'enrolled_at', 'id'])
    .execute();
  await db.schema
    .createIndex('hosts_liveness')
    .on('hosts')
    .columns(['decommissioned_at', 'last_seen'])
    .execute();
}

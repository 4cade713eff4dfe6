import { sql, type Kysely } from 'kysely';

/**
 * Fleet events (`fleet_events`, cursor = AUTOINCREMENT rowid, so cursors only grow even after
 * the newest rows are deleted), the host status last told per host (`fleet_host_status`,
 * seeded from the hosts there are, so an upgrade tells no host's enrollment again), webhooks
 * and their deliveries (the outbox and delivery log).
 */
export async function fleetEventsMigration(db: Kysely<unknown>): Promise<void> {
  await sql`CREATE TABLE fleet_events (
    cursor INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    kind TEXT NOT NULL,
    time TEXT NOT NULL,
    host_id TEXT,
    host_name TEXT,
    service TEXT,
    operation_id TEXT,
    data TEXT NOT NULL DEFAULT '{}'
  )`.execute(db);
  await db.schema.createIndex('fleet_events_time').on('fleet_events').columns(['time', 'cursor']).execute();

  await db.schema
    .createTable('fleet_host_status')
    .addColumn('host_id', 'text', (c) => c.primaryKey())
    .addColumn('status', 'text', (c) => c.notNull())
    .addColumn('changed_at', 'text', (c) => c.notNull())
    .execute();
  await sql`INSERT INTO fleet_host_status (host_id, status, changed_at)
    SELECT id,
      CASE WHEN decommissioned_at IS NOT NULL THEN 'decommissioned'
           WHEN last_seen IS NULL THEN 'pending'
           ELSE 'online' END,
      COALESCE(decommissioned_at, last_seen, enrolled_at)
    FROM hosts`.execute(db);

  await db.schema
    .createTable('webhooks')
    .addColumn('name', 'text', (c) => c.primaryKey())
    .addColumn('url', 'text', (c) => c.notNull())
    .addColumn('events', 'text', (c) => c.notNull())
    .addColumn('secret', 'text', (c) => c.notNull())
    .addColumn('allow_http', 'integer', (c) => c.notNull().defaultTo(0))
    .addColumn('created_at', 'text', (c) => c.notNull())
    .addColumn('created_by', 'text', (c) => c.notNull())
    .addColumn('cursor', 'integer', (c) => c.notNull())
    .execute();

  await sql`CREATE TABLE webhook_deliveries (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    webhook TEXT NOT NULL,
    event_cursor INTEGER NOT NULL,
    event_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    body TEXT NOT NULL,
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    created_at TEXT NOT NULL,
    next_attempt_at TEXT,
    last_attempt_at TEXT,
    last_status INTEGER,
    last_error TEXT,
    delivered_at TEXT
  )`.execute(db);
  // Due deliveries are found by (state, next attempt); a webhook's log is read newest first.
  await db.schema
    .createIndex('webhook_deliveries_due')
    .on('webhook_deliveries')
    .columns(['state', 'next_attempt_at'])
    .execute();
  await db.schema
    .createIndex('webhook_deliveries_log')
    .on('webhook_deliveries')
    .columns(['webhook', 'state', 'id'])
    .execute();
}

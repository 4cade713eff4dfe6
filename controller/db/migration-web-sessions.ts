import type { Kysely } from 'kysely';

/**
 * Dashboard logins: one row per browser session, kept as the SHA-256 of its cookie, bound to the operator credential that logged in. A session counts only while
 * that credential is active and the session itself is neither revoked (logout) nor expired.
 */
export async function webSessionsMigration(db: Kysely<unknown>): Promise<void> {
  await db.schema
    .createTable('web_sessions')
    .addColumn('id', 'text', (c) => c.primaryKey())
    .addColumn('operator_id', 'text', (c) => c.notNull())
    .addColumn('created_at', 'text', (c) => c.notNull())
    .addColumn('expires_at', 'text', (c) => c.notNull())
    .addColumn('revoked_at', 'text')
    .execute();
  await db.schema.createIndex('web_sessions_operator').on('web_sessions').column('operator_id').execute();
}

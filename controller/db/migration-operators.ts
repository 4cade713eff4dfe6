import { sql, type Kysely } from 'kysely';

/**
 * Operators replace the admin tokens: each row is one credential, a bearer token (kept as its
 * SHA-256) or a pinned client certificate (kept as its fingerprint), with the scopes granted to
 * it. Every admin token that existed becomes an `admin` operator under its own name, revoked
 * ones staying revoked, so the token init wrote keeps working and a lost one stays refused.
 */
export async function operatorsMigration(db: Kysely<unknown>): Promise<void> {
  await db.schema
    .createTable('operators')
    .addColumn('id', 'text', (c) => c.primaryKey())
    .addColumn('name', 'text', (c) => c.notNull())
    .addColumn('kind', 'text', (c) => c.notNull())
    .addColumn('hash', 'text', (c) => c.unique())
    .addColumn('fingerprint', 'text', (c) => c.unique())
    .addColumn('scopes', 'text', (c) => c.notNull())
    .addColumn('created_at', 'text', (c) => c.notNull())
    .addColumn('created_by', 'text', (c) => c.notNull())
    .addColumn('expires_at', 'text')
    .addColumn('revoked_at', 'text')
    .execute();
  await db.schema.createIndex('operators_name').on('operators').columns(['name', 'revoked_at']).execute();
  await sql`INSERT INTO operators (id, name, kind, hash, fingerprint, scopes, created_at, created_by,
      expires_at, revoked_at)
    SELECT id, name, 'token', hash, NULL, '["admin"]', created_at, 'init', NULL, revoked_at
    FROM admin_tokens`.execute(db);
  await db.schema.dropTable('admin_tokens').execute();

  // Requests for actions that wait for other operators' approval; `request` is what runs.
  await db.schema
    .createTable('approvals')
    .addColumn('id', 'text', (c) => c.primaryKey())
    .addColumn('action', 'text', (c) => c.notNull())
    .addColumn('target', 'text', (c) => c.notNull())
    .addColumn('request', 'text', (c) => c.notNull())
    .addColumn('requester', 'text', (c) => c.notNull())
    .addColumn('required', 'integer', (c) => c.notNull())
    .addColumn('approvers', 'text', (c) => c.notNull())
    .addColumn('state', 'text', (c) => c.notNull())
    .addColumn('reason', 'text')
    .addColumn('result', 'text')
    .addColumn('created_at', 'text', (c) => c.notNull())
    .addColumn('expires_at', 'text', (c) => c.notNull())
    .addColumn('decided_at', 'text')
    .execute();
  // One pending request per action and target: asking again returns it.
  await db.schema
    .createIndex('approvals_pending')
    .on('approvals')
    .columns(['action', 'target'])
    .unique()
    .where(sql.ref('state'), '=', 'pending')
    .execute();
}

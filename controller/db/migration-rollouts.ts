import type { Kysely } from 'kysely';

/**
 * Halted rollouts: what `ops resume` needs to continue an operation that stopped at its first
 * failed host (its kind, its rollout options, the request it carried out, as JSON HaltedRollout).
 * A row exists only while its operation is `halted`; resume and cancel remove it.
 */
export async function rolloutsMigration(db: Kysely<unknown>): Promise<void> {
  await db.schema
    .createTable('halted_rollouts')
    .addColumn('operation_id', 'text', (c) => c.primaryKey().references('operations.id'))
    .addColumn('kind', 'text', (c) => c.notNull())
    .addColumn('rollout', 'text', (c) => c.notNull())
    .addColumn('halted_at', 'text', (c) => c.notNull())
    .execute();
}

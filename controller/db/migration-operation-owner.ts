import type { Kysely } from 'kysely';

/**
 * Which controller process runs each operation (`operations.controller`, the id of its
 * cluster link), so that with several controllers on one database the leader ends only the
 * operations of controllers that are gone. Rows from before have none: a controller gone too.
 */
export async function operationOwnerMigration(db: Kysely<unknown>): Promise<void> {
  await db.schema.alterTable('operations').addColumn('controller', 'text').execute();
}

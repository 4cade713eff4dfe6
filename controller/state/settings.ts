import type { Kysely } from 'kysely';
import type { ControllerDatabase } from '../db/schema.js';

/** JSON array of the addresses given to the first `controller init`. */
export const SETTING_ADDRESSES = 'addresses';
/** The state id of `state-manifest.json`: ties the database to its state dir. */
export const SETTING_STATE_ID = 'state_id';

export async function getSetting(db: Kysely<ControllerDatabase>, key: string): Promise<string | undefined> {
  const row = await db.selectFrom('settings').select('value').where('key', '=', key).executeTakeFirst();
  return row?.value;
}

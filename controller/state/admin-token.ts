import { readFile } from 'node:fs/promises';
import { assertPrivateFile, PRIVATE_FILE_MODE, writeFileAtomic } from '../../pki/index.js';
import { isoAt, type Clock } from '../clock.js';
import type { ControllerDb } from '../db/open-database.js';
import type { AdminCredential } from '../http/admin-auth.js';
import { newId, newSecret, secretHash } from '../secrets.js';

export const ADMIN_TOKEN_PREFIX = 'corral_admin';
/** What newSecret(ADMIN_TOKEN_PREFIX) makes: the prefix and 256 bits in base64url. */
export const ADMIN_TOKEN_RE = /^corral_admin_[A-Za-z0-9_-]{43}$/;
/** The admin tokens not revoked, as the admin API checks them (names and hashes only). */
export async function loadAdminCredentials(db: ControllerDb): Promise<AdminCredential[]> {
  return db.selectFrom('admin_tokens').select(['name', 'hash']).where('revoked_at', 'is', null).execute();
}

/** The name init gives the token it writes to `admin-token`. */
const INIT_TOKEN_NAME = 'admin';

async function readIfExists(path: string): Promise<string | undefined> {
  try {
    return await readFile(path, 'utf8');
  } catch (e: unknown) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw e;
  }
}

/**
 * Makes sure `path` holds an admin token (0600) whose hash the database knows; returns true
 * when it wrote or registered anything. With `revokeOthers` (a reinitialized token), every
 * other token init made is revoked, so the lost one stops working.
 */
export async function ensureAdminToken(
  db: ControllerDb,
  path: string,
  clock: Clock,
  o: { readonly revokeOthers?: boolean } = {},
): Promise<boolean> {
  const existing = await readIfExists(path);
  const token = existing?.trim() || newSecret(ADMIN_TOKEN_PREFIX);
  if (existing === undefined) await writeFileAtomic(path, `${token}\n`, PRIVATE_FILE_MODE);
  else await assertPrivateFile(path);
  const hash = secretHash(token);
  const now = isoAt(clock.now());
  return db.transaction().execute(async (trx) => {
    if (o.revokeOthers) {
      await trx
        .updateTable('admin_tokens')
        .set({ revoked_at: now })
        .where('name', '=', INIT_TOKEN_NAME)
        .where('hash', '!=', hash)
        .where('revoked_at', 'is', null)
        .execute();
    }
    const row = await trx.selectFrom('admin_tokens').select('id').where('hash', '=', hash).executeTakeFirst();
    if (row) return existing === undefined;
    await trx
      .insertInto('admin_tokens')
      .values({ id: newId('adm'), name: INIT_TOKEN_NAME, hash, created_at: now, revoked_at: null })
      .execute();
    return true;
  });
}

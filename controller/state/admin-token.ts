import { readFile } from 'node:fs/promises';
import { assertPrivateFile, PRIVATE_FILE_MODE, writeFileAtomic } from '../../pki/index.js';
import { isoAt, type Clock } from '../clock.js';
import type { ControllerDb } from '../db/open-database.js';
import { newId, newSecret, secretHash } from '../secrets.js';

export const ADMIN_TOKEN_PREFIX = 'corral_admin';
/** What newSecret(ADMIN_TOKEN_PREFIX) makes: the prefix and 256 bits in base64url. */
export const ADMIN_TOKEN_RE = /^corral_admin_[A-Za-z0-9_-]{43}$/;
/** The name of the operator init makes: the token it writes to `admin-token` (scope `admin`). */
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
 * Makes sure `path` holds an admin token (0600) whose hash the database knows, as a token
 * credential of the `admin` operator with scope `admin`; returns true when it wrote or
 * registered anything. With `revokeOthers` (a reinitialized token), every other token of the
 * `admin` operator is revoked, so the lost one stops working.
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
        .updateTable('operators')
        .set({ revoked_at: now })
        .where('name', '=', INIT_TOKEN_NAME)
        .where('kind', '=', 'token')
        .where('hash', '!=', hash)
        .where('revoked_at', 'is', null)
        .execute();
    }
    const row = await trx.selectFrom('operators').select('id').where('hash', '=', hash).executeTakeFirst();
    if (row) return existing === undefined;
    await trx
      .insertInto('operators')
      .values({
        id: newId('adm'),
        name: INIT_TOKEN_NAME,
        kind: 'token',
        hash,
        fingerprint: null,
        scopes: JSON.stringify(['admin']),
        created_at: now,
        created_by: 'init',
        expires_at: null,
        revoked_at: null,
      })
      .execute();
    return true;
  });
}

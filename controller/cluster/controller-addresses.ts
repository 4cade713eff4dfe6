import type { Kysely } from 'kysely';
import type { ControllerDatabase } from '../db/schema.js';
import { MAX_BUNDLE_CONTROLLERS } from '../../pki/index.js';
import { parseHostPort } from '../../kit/host-port.js';

/** Where one controller is reached. */
export interface ControllerAddress {
  readonly worker: string;
  readonly syslog?: string;
}

/**
 * Records where controller `id` is reached (its row replaced when it exists) and deletes the
 * rows of controllers not in `live` (the ones connected to the database now), in one
 * transaction. Called once a controller serves all its listeners.
 */
export async function publishControllerAddress(
  db: Kysely<ControllerDatabase>,
  id: string,
  address: ControllerAddress,
  live: ReadonlySet<string>,
  nowIso: string,
): Promise<void> {
  const keep = [...new Set([...live, id])];
  await db.transaction().execute(async (trx) => {
    await trx.deleteFrom('controller_addresses').where('controller_id', 'not in', keep).execute();
    await trx.deleteFrom('controller_addresses').where('controller_id', '=', id).execute();
    await trx
      .insertInto('controller_addresses')
      .values({
        controller_id: id,
        worker: address.worker,
        syslog: address.syslog ?? null,
        started_at: nowIso,
      })
      .execute();
  });
}

/** Forgets controller `id`'s row (at shutdown); a row left behind is ignored once its controller is gone. */
export async function withdrawControllerAddress(db: Kysely<ControllerDatabase>, id: string): Promise<void> {
  await db.deleteFrom('controller_addresses').where('controller_id', '=', id).execute();
}

/**
 * The worker API addresses of the controllers in `live` other than `self`, oldest start first,
 * without `exclude` (this controller's own address) and repeats, at most
 * MAX_BUNDLE_CONTROLLERS - 1 of them (so that with this controller's own they fit a bundle).
 */
export async function peerWorkerAddresses(
  db: Kysely<ControllerDatabase>,
  self: string,
  live: ReadonlySet<string>,
  exclude: string,
): Promise<string[]> {
  const others = [...live].filter((id) => id !== self);
  if (others.length === 0) return [];
  const rows = await db
    .selectFrom('controller_addresses')
    .select(['worker'])
    .where('controller_id', 'in', others)
    .orderBy('started_at')
    .orderBy('controller_id')
    .execute();
  const seen = new Set([exclude]);
  const out: string[] = [];
  for (const { worker } of rows) {
    if (seen.has(worker) || out.length >= MAX_BUNDLE_CONTROLLERS - 1 || !isHostPort(worker)) continue;
    seen.add(worker);
    out.push(worker);
  }
  return out;
}

function isHostPort(text: string): boolean {
  try {
    parseHostPort(text);
    return text.length <= 300;
  } catch (e: unknown) {
    if (e instanceof Error) return false; // CORRAL_ERR_VALIDATION: not HOST:PORT, so not listed
    throw e;
  }
}

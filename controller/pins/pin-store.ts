import type { Kysely } from 'kysely';
import type { ControllerDatabase } from '../db/schema.js';
import type { Pin, PinMatch, PinRole } from './pin-registry.js';

/**
 * The pins of hosts not decommissioned, with what a registry entry needs (and `active`);
 * callers add their own conditions.
 */
export function selectLivePins(db: Kysely<ControllerDatabase>) {
  return db
    .selectFrom('pins')
    .innerJoin('hosts', 'hosts.id', 'pins.host_id')
    .select([
      'pins.fingerprint',
      'pins.host_id',
      'pins.role',
      'pins.not_after',
      'pins.active',
      'pins.superseded_at',
      'hosts.name',
    ])
    .where('hosts.decommissioned_at', 'is', null);
}

/** A row of `selectLivePins` as the registry keeps it. */
export function pinOfRow(r: {
  readonly fingerprint: string;
  readonly host_id: string;
  readonly role: string;
  readonly not_after: string;
  readonly superseded_at: string | null;
  readonly name: string;
}): Pin {
  return {
    fingerprint: r.fingerprint,
    hostId: r.host_id,
    hostName: r.name,
    role: r.role as PinRole,
    notAfterMs: Date.parse(r.not_after),
    superseded: r.superseded_at !== null,
  };
}

/** Every active pin of every host that is not decommissioned, to seed the registry at start. */
export async function loadActivePins(db: Kysely<ControllerDatabase>): Promise<Pin[]> {
  const rows = await selectLivePins(db).where('pins.active', '=', 1).execute();
  return rows.map(pinOfRow);
}

/** The pins kept when their hosts were decommissioned (see `lookupDecommissioned`). */
export async function loadDecommissionedPins(db: Kysely<ControllerDatabase>): Promise<PinMatch[]> {
  const rows = await db
    .selectFrom('pins')
    .innerJoin('hosts', 'hosts.id', 'pins.host_id')
    .select(['pins.fingerprint', 'pins.host_id', 'pins.role', 'hosts.name'])
    .where('pins.decommissioned', '=', 1)
    .where('hosts.decommissioned_at', 'is not', null)
    .execute();
  return rows.map((r) => ({
    fingerprint: r.fingerprint,
    hostId: r.host_id,
    hostName: r.name,
    role: r.role as PinRole,
  }));
}

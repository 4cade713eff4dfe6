import type { Kysely } from 'kysely';
import type { ControllerDatabase } from '../db/schema.js';
import type { Pin, PinMatch, PinRole } from './pin-registry.js';

/** Every active pin of every host that is not decommissioned, to seed the registry at start. */
export async function loadActivePins(db: Kysely<ControllerDatabase>): Promise<Pin[]> {
  const rows = await db
    .selectFrom('pins')
    .innerJoin('hosts', 'hosts.id', 'pins.host_id')
    .select([
      'pins.fingerprint',
      'pins.host_id',
      'pins.role',
      'pins.not_after',
      'pins.superseded_at',
      'hosts.name',
    ])
    .where('pins.active', '=', 1)
    .where('hosts.decommissioned_at', 'is', null)
    .execute();
  return rows.map((r) => ({
    fingerprint: r.fingerprint,
    hostId: r.host_id,
    hostName: r.name,
    role: r.role as PinRole,
    notAfterMs: Date.parse(r.not_after),
    superseded: r.superseded_at !== null,
  }));
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

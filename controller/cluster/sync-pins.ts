import type { Kysely } from 'kysely';
import type { ControllerDatabase } from '../db/schema.js';
import type { MutablePinRegistry } from '../pins/pin-registry.js';
import { loadActivePins, loadDecommissionedPins } from '../pins/pin-store.js';

/**
 * Brings the in-memory pins up to the database, for a controller that shares it with others:
 * hosts decommissioned elsewhere are revoked here (through `revoke`, which closes their live
 * connections), and pins committed elsewhere (an enrollment, a renewal) are added. Pins are
 * only ever added or revoked here, never retired: a retirement elsewhere leaves the old
 * fingerprint matching here until this controller restarts (it is still a pin the CA signed
 * for that host, and expires with its certificate).
 */
export async function syncPins(
  db: Kysely<ControllerDatabase>,
  pins: MutablePinRegistry,
  revoke: (hostId: string) => void,
): Promise<void> {
  const decommissioned = await loadDecommissionedPins(db);
  for (const hostId of new Set(decommissioned.map((p) => p.hostId))) revoke(hostId);
  const active = await loadActivePins(db);
  const unknown = active.filter(
    (p) => pins.lookup(p.fingerprint) === undefined && pins.lookupExpired(p.fingerprint) === undefined,
  );
  if (unknown.length > 0) pins.add(unknown);
}

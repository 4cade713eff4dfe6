import type { Kysely } from 'kysely';
import { isoAt } from '../clock.js';
import type { ControllerDatabase } from '../db/schema.js';
import type { MutablePinRegistry, Pin, PinRegistry } from '../pins/pin-registry.js';
import { loadDecommissionedPins, pinOfRow, selectLivePins } from '../pins/pin-store.js';

/** What the database says that the in-memory pins do not know yet. */
export interface PinChanges {
  /** Hosts decommissioned (by any controller). */
  readonly revoked: readonly string[];
  /** Active pins not known here (an enrollment, a renewal). */
  readonly added: readonly Pin[];
  /** Active pins a renewal superseded. */
  readonly superseded: readonly string[];
  /** Pins retired (a renewal, or the new certificate seen in use) whose certificates have not expired. */
  readonly retired: readonly string[];
}

/**
 * Reads the pins of one host (`hostId`) or of every host, for a controller that shares the
 * database with others. Only facts that never go back are read (a host decommissioned, a pin
 * superseded, a pin retired; pins are only ever added), so a read that raced a change made
 * here can at most be late, never undo it. Retired pins are read only while their
 * certificates are unexpired: an expired pin matches nothing anyway.
 */
export async function readPinChanges(
  db: Kysely<ControllerDatabase>,
  pins: PinRegistry,
  o: { readonly hostId?: string; readonly nowMs: number },
): Promise<PinChanges> {
  let revoked: string[];
  if (o.hostId === undefined) {
    revoked = [...new Set((await loadDecommissionedPins(db)).map((p) => p.hostId))];
  } else {
    const host = await db
      .selectFrom('hosts')
      .select('decommissioned_at')
      .where('id', '=', o.hostId)
      .executeTakeFirst();
    if (!host) return { revoked: [], added: [], superseded: [], retired: [] };
    if (host.decommissioned_at !== null)
      return { revoked: [o.hostId], added: [], superseded: [], retired: [] };
    revoked = [];
  }
  let q = selectLivePins(db).where((eb) =>
    eb.or([eb('pins.active', '=', 1), eb('pins.not_after', '>', isoAt(o.nowMs))]),
  );
  if (o.hostId !== undefined) q = q.where('pins.host_id', '=', o.hostId);
  const rows = await q.execute();
  const added: Pin[] = [];
  const superseded: string[] = [];
  const retired: string[] = [];
  for (const r of rows) {
    if (r.active !== 1) {
      retired.push(r.fingerprint);
      continue;
    }
    const known = pins.lookup(r.fingerprint) ?? pins.lookupExpired(r.fingerprint);
    if (r.superseded_at !== null) superseded.push(r.fingerprint);
    if (!known) added.push(pinOfRow(r));
  }
  return { revoked, added, superseded, retired };
}

/**
 * Brings the in-memory pins up to what `readPinChanges` read: hosts decommissioned elsewhere
 * are revoked here (through `revoke`, which closes their live connections), pins committed
 * elsewhere are added, superseded and retired as they were there (a retired pin's live
 * connections close, as on the controller that retired it). Synchronous, so a caller can
 * tell these changes from its own.
 */
export function applyPinChanges(
  pins: MutablePinRegistry,
  changes: PinChanges,
  revoke: (hostId: string) => void,
): void {
  for (const hostId of changes.revoked) revoke(hostId);
  if (changes.added.length > 0) pins.add(changes.added);
  if (changes.superseded.length > 0) pins.supersede(changes.superseded);
  if (changes.retired.length > 0) pins.retire(changes.retired);
}

import type { Kysely } from 'kysely';
import type { Logger } from 'pino';
import { isoAt, type Clock } from '../clock.js';
import type { ControllerDatabase } from '../db/schema.js';
import type { MutablePinRegistry } from './pin-registry.js';
import { SingleFlight } from '../../kit/single-flight.js';

/**
 * Retirements that may wait: one per host and role at most. Past this, a refused one is logged
 * and asked again by the next request that presents the new certificate.
 */
const PIN_RETIREMENTS_MAX_QUEUED = 4096;

export interface PinKeeper {
  /**
   * A pinned certificate was just used (a heartbeat, a call to an updater). If a renewal had
   * superseded older certificates of the same host and role, they are retired now: the worker
   * has switched, so there was never a moment when neither certificate worked.
   */
  seen(fingerprint: string): void;
  /** Waits for retirements in progress. */
  settle(): Promise<void>;
}

export function createPinKeeper(deps: {
  db: Kysely<ControllerDatabase>;
  pins: MutablePinRegistry;
  clock: Clock;
  log: Logger;
}): PinKeeper {
  const { db, pins, clock, log } = deps;
  // One retirement at a time; a host's retirement already waiting or running is not asked again.
  const retirements = new SingleFlight({ name: 'pin retirement', maxQueued: PIN_RETIREMENTS_MAX_QUEUED });

  async function retire(hostId: string, fingerprints: string[]): Promise<void> {
    await db
      .updateTable('pins')
      .set({ active: 0, retired_at: isoAt(clock.now()) })
      .where('fingerprint', 'in', fingerprints)
      .where('host_id', '=', hostId)
      .execute();
    pins.retire(fingerprints);
    log.info({ hostId, fingerprints }, 'superseded certificates retired');
  }

  return {
    seen(fingerprint) {
      const pin = pins.lookup(fingerprint);
      if (!pin || !pins.hasSuperseded(pin.hostId)) return;
      const superseded = pins.supersededFor(pin.hostId, pin.role);
      if (superseded.length === 0 || superseded.includes(fingerprint)) return;
      const key = `${pin.hostId}/${pin.role}`;
      retirements
        .share(key, () => retire(pin.hostId, superseded))
        .catch((err: unknown) => log.error({ err, hostId: pin.hostId }, 'retiring superseded pins failed'));
    },
    async settle() {
      await retirements.idle();
    },
  };
}

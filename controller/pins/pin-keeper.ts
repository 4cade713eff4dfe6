import type { Kysely } from 'kysely';
import type { Logger } from 'pino';
import { isoAt, type Clock } from '../clock.js';
import type { ControllerDatabase } from '../db/schema.js';
import type { MutablePinRegistry } from './pin-registry.js';

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
  const inFlight = new Map<string, Promise<void>>();

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
      if (inFlight.has(key)) return;
      const job = retire(pin.hostId, superseded)
        .catch((err: unknown) => log.error({ err, hostId: pin.hostId }, 'retiring superseded pins failed'))
        .finally(() => inFlight.delete(key));
      inFlight.set(key, job);
    },
    async settle() {
      await Promise.all(inFlight.values());
    },
  };
}

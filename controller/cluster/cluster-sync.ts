import type { Kysely } from 'kysely';
import type { Logger } from 'pino';
import type { ClusterChange } from '../../protocol/cluster.js';
import { SingleFlight } from '../../kit/single-flight.js';
import type { Clock } from '../clock.js';
import type { ControllerDatabase } from '../db/schema.js';
import type { MutablePinRegistry } from '../pins/pin-registry.js';
import type { ClusterLink } from './cluster-link.js';
import { applyPinChanges, readPinChanges } from './sync-pins.js';

/**
 * Entries read again at once because another controller announced a change, waiting at most;
 * past that one is logged and left to the periodic resync.
 */
const REFRESHES_MAX_QUEUED = 4096;

/** The parts made after the cluster link that announcements reach (see ClusterSync.attach). */
export interface ClusterSyncParts {
  /** Whether an operator credential no longer counts, and the admin connections it authenticated. */
  readonly operators?: { isInactive(credentialId: string): Promise<boolean> };
  readonly operatorSessions?: { close(ids: readonly string[]): number };
  readonly webhooks?: { webhooksChanged(): void };
  readonly heartbeats?: { forget(hostId: string): void };
}

/**
 * What keeps a controller's memory the same as the other controllers' on one database:
 * `take` applies another controller's announcement (reading that entry from the database,
 * one at a time, the same entry asked twice while it waits read once), `resync` re-reads all
 * of it, and the pins changed here are announced, one announcement per host per tick. Changes
 * applied from the database are never announced again.
 */
export interface ClusterSync {
  /** For ClusterLink.onChange. Never throws; a failed read is logged (the resync repeats it). */
  take(change: ClusterChange): void;
  /** For ClusterLink.onResync. */
  resync(): Promise<void>;
  /** From now on, pins changed here are announced through `cluster` (only with `peers`). */
  announceThrough(cluster: Pick<ClusterLink, 'announce'>): void;
  attach(parts: ClusterSyncParts): void;
  /** Waits for reads in progress (after the link stopped listening). */
  close(): Promise<void>;
}

export function createClusterSync(o: {
  readonly db: Kysely<ControllerDatabase>;
  readonly pins: MutablePinRegistry;
  /** Hosts decommissioned at start: a revocation is taken in once. */
  readonly revoked: Iterable<string>;
  readonly clock: Clock;
  readonly log: Logger;
  readonly peers: boolean;
}): ClusterSync {
  const { db, pins, clock, log } = o;
  const revoked = new Set(o.revoked);
  pins.onRevoked((hostId) => revoked.add(hostId));
  const revoke = (hostId: string): void => {
    if (!revoked.has(hostId)) pins.revokeHost(hostId);
  };
  let parts: ClusterSyncParts = {};
  /** Set while pins read from the database are applied: those changes are not announced. */
  let applying = false;
  const syncPins = async (hostId?: string): Promise<void> => {
    const changes = await readPinChanges(db, pins, {
      ...(hostId !== undefined && { hostId }),
      nowMs: clock.now(),
    });
    applying = true;
    try {
      applyPinChanges(pins, changes, revoke);
    } finally {
      applying = false;
    }
  };
  const refreshes = new SingleFlight({ name: 'cluster refresh', maxQueued: REFRESHES_MAX_QUEUED });

  async function apply(change: ClusterChange): Promise<void> {
    switch (change.kind) {
      case 'host':
        return syncPins(change.id);
      case 'operator': {
        if (!parts.operators || !parts.operatorSessions) return;
        if (!(await parts.operators.isInactive(change.id))) return;
        const closed = parts.operatorSessions.close([change.id]);
        if (closed > 0) log.info({ credential: change.id, closed }, 'revoked operator connections closed');
        return;
      }
      case 'webhooks':
        return parts.webhooks?.webhooksChanged();
      case 'services':
        return parts.heartbeats?.forget(change.id);
    }
  }

  let announcer: Pick<ClusterLink, 'announce'> | undefined;
  /** Hosts whose pins changed here since the last announcement. */
  const changedHosts = new Set<string>();
  pins.onChanged((hostId) => {
    if (applying || !o.peers || !announcer) return;
    const through = announcer;
    if (changedHosts.size === 0)
      queueMicrotask(() => {
        const hosts = [...changedHosts];
        changedHosts.clear();
        for (const id of hosts) void through.announce({ kind: 'host', id });
      });
    changedHosts.add(hostId);
  });

  return {
    take(change) {
      refreshes
        .coalesce(`${change.kind}:${change.id}`, () => apply(change))
        .catch((err: unknown) =>
          log.warn(
            { err, kind: change.kind, id: change.id },
            'reading a change failed; the next resync will',
          ),
        );
    },
    async resync() {
      await syncPins();
      parts.webhooks?.webhooksChanged();
    },
    announceThrough(cluster) {
      announcer = cluster;
    },
    attach(more) {
      parts = { ...parts, ...more };
    },
    close: () => refreshes.idle(),
  };
}

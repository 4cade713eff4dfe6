import { OFFLINE_AFTER_INTERVALS, STALE_AFTER_INTERVALS } from '../../protocol/constants.js';
import type { HostStatus } from '../../protocol/host.js';

/**
 * A host's status from its heartbeat age: never seen → pending; within 2 intervals → online;
 * 2 missed → stale; 3 missed → offline. Decommissioned wins over all. Pure: nothing acts on
 * a status change, so going offline never destroys or moves anything by itself.
 */
export function deriveHostStatus(
  host: { readonly lastSeenMs: number | null; readonly decommissioned: boolean },
  nowMs: number,
  intervalMs: number,
): HostStatus {
  if (host.decommissioned) return 'decommissioned';
  if (host.lastSeenMs === null) return 'pending';
  const age = nowMs - host.lastSeenMs;
  if (age >= OFFLINE_AFTER_INTERVALS * intervalMs) return 'offline';
  if (age >= STALE_AFTER_INTERVALS * intervalMs) return 'stale';
  return 'online';
}

/** A host's health at a glance: a colour for the dot and the words that say the same (colour is never the only signal). */
export type Health = 'green' | 'yellow' | 'red' | 'grey';

export interface HealthInput {
  readonly status: string;
  readonly metrics: { readonly diskTotalBytes: number; readonly diskFreeBytes: number } | null;
  /** Observed service states on the host. */
  readonly services: readonly string[];
}

const DISK_WARN = 0.8;
const DISK_BAD = 0.9;

export function healthOf(h: HealthInput): { health: Health; reason: string } {
  if (h.status === 'pending') return { health: 'grey', reason: 'never seen' };
  if (h.status === 'decommissioned') return { health: 'grey', reason: 'decommissioned' };
  const used =
    h.metrics && h.metrics.diskTotalBytes > 0 ? 1 - h.metrics.diskFreeBytes / h.metrics.diskTotalBytes : 0;
  const failed = h.services.filter((s) => s === 'failed' || s === 'escalated').length;
  if (h.status === 'offline') return { health: 'red', reason: 'offline' };
  if (failed > 0) return { health: 'red', reason: `${failed} service${failed === 1 ? '' : 's'} failed` };
  if (used > DISK_BAD) return { health: 'red', reason: `disk ${Math.round(used * 100)}% full` };
  if (h.status === 'stale') return { health: 'yellow', reason: 'stale' };
  const degraded = h.services.filter((s) => s === 'degraded').length;
  if (degraded > 0)
    return { health: 'yellow', reason: `${degraded} service${degraded === 1 ? '' : 's'} degraded` };
  if (used > DISK_WARN) return { health: 'yellow', reason: `disk ${Math.round(used * 100)}% full` };
  return { health: 'green', reason: 'online' };
}

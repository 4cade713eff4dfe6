import type { Kysely } from 'kysely';
import type { PendingView, ServiceListQuery, ServiceView } from '../../protocol/deployment.js';
import type { ServiceState } from '../../protocol/heartbeat.js';
import type { ControllerDatabase } from '../db/schema.js';
import { deriveHostStatus } from '../fleet/host-status.js';
import { loadEscalated } from './failed-retries.js';
import type { Liveness } from '../fleet/host-store.js';

interface Row {
  hostId: string;
  service: string;
  desired: 'running' | 'removed';
  desiredAt: string | null;
  /** The desired spec's runtime and image (rows not desired any more have none). */
  runtime?: string;
  image?: string;
}

/** `runtime` and `image` of a stored spec; nothing for one that is not an object. */
function specKind(json: string): { runtime?: string; image?: string } {
  try {
    const v = JSON.parse(json) as { runtime?: unknown; image?: unknown };
    return {
      ...(typeof v.runtime === 'string' && { runtime: v.runtime.slice(0, 16) }),
      ...(typeof v.image === 'string' && { image: v.image.slice(0, 512) }),
    };
  } catch {
    return {}; // SyntaxError: the spec column is checked where it is decoded; here it is only a label
  }
}

const withRuntime = (runtime: string | undefined, image: string | undefined) => ({
  ...(runtime !== undefined && { runtime }),
  ...(image !== undefined && { image }),
});

const latest = (...times: (string | null | undefined)[]): string | null =>
  times
    .filter((t): t is string => typeof t === 'string')
    .sort()
    .at(-1) ?? null;

/**
 * Every service the controller wants somewhere, or wants gone but has not seen go, or sees
 * running unwanted, with what the host last reported:
 * - a dispatch that failed shows `failed` with its reason until a heartbeat newer than the
 *   failure reports at least the generation that failed to reach the host (then the
 *   heartbeat's observation wins);
 * - a host that is not online shows `unknown` (what it last said may no longer hold);
 * - otherwise the state from the last heartbeat, or `unknown` when it does not list the service.
 */
export async function listServiceViews(
  db: Kysely<ControllerDatabase>,
  live: Liveness,
  query: ServiceListQuery = {},
): Promise<ServiceView[]> {
  const [hosts, desired, dispatch, observed] = await Promise.all([
    db.selectFrom('hosts').select(['id', 'name', 'last_seen', 'decommissioned_at', 'generation']).execute(),
    db.selectFrom('desired_services').select(['host_id', 'service', 'updated_at', 'spec']).execute(),
    db.selectFrom('service_dispatch').selectAll().execute(),
    db.selectFrom('service_observed').selectAll().execute(),
  ]);
  const escalated = await loadEscalated(db);
  const hostById = new Map(hosts.map((h) => [h.id, h]));
  const key = (hostId: string, service: string) => `${hostId}\u0000${service}`;
  const dispatchBy = new Map(dispatch.map((d) => [key(d.host_id, d.service), d]));
  const observedBy = new Map(observed.map((s) => [key(s.host_id, s.service), s]));

  const rows = new Map<string, Row>();
  for (const d of desired) {
    rows.set(key(d.host_id, d.service), {
      hostId: d.host_id,
      service: d.service,
      desired: 'running',
      desiredAt: d.updated_at,
      ...specKind(d.spec),
    });
  }
  const isLive = (hostId: string): boolean => hostById.get(hostId)?.decommissioned_at === null;
  for (const d of dispatch) {
    const k = key(d.host_id, d.service);
    if (!rows.has(k) && d.desired === 'removed' && isLive(d.host_id)) {
      rows.set(k, { hostId: d.host_id, service: d.service, desired: 'removed', desiredAt: null });
    }
  }
  for (const s of observed) {
    const k = key(s.host_id, s.service);
    if (!rows.has(k) && isLive(s.host_id)) {
      rows.set(k, { hostId: s.host_id, service: s.service, desired: 'removed', desiredAt: null });
    }
  }

  const views: ServiceView[] = [];
  for (const [k, r] of rows) {
    const host = hostById.get(r.hostId);
    if (!host) continue;
    if (query.host !== undefined && host.name !== query.host) continue;
    const status = deriveHostStatus(
      {
        lastSeenMs: host.last_seen === null ? null : Date.parse(host.last_seen),
        decommissioned: host.decommissioned_at !== null,
      },
      live.nowMs,
      live.intervalMs,
    );
    const d = dispatchBy.get(k);
    const seen = observedBy.get(k);
    // A heartbeat after the failure, from an agent that reached the generation that failed.
    const newer =
      d !== undefined &&
      seen !== undefined &&
      host.generation >= d.generation &&
      host.last_seen !== null &&
      host.last_seen > d.updated_at;
    let observedState: ServiceState;
    let lastError: string | null;
    let updatedAt: string | null;
    if (d?.state === 'failed' && !newer) {
      observedState = 'failed';
      lastError = d.reason;
      updatedAt = d.updated_at;
    } else if (status !== 'online') {
      observedState = 'unknown';
      lastError = seen?.last_error ?? null;
      updatedAt = latest(seen?.updated_at, d?.updated_at, r.desiredAt);
    } else if (seen) {
      observedState = seen.state as ServiceState;
      lastError = seen.last_error;
      updatedAt = latest(seen.updated_at, d?.updated_at, r.desiredAt);
    } else {
      observedState = 'unknown';
      lastError = null;
      updatedAt = latest(d?.updated_at, r.desiredAt);
    }
    if (query.state !== undefined && observedState !== query.state) continue;
    views.push({
      service: r.service,
      host: host.name,
      desired: r.desired,
      observed: observedState,
      restarts: seen?.restarts ?? 0,
      lastError,
      updatedAt,
      // The desired spec names the runtime and image; a row not desired any more shows what
      // the host last reported. The container id is only ever the host's report.
      ...withRuntime(r.runtime ?? seen?.runtime ?? undefined, r.image ?? seen?.image ?? undefined),
      ...(seen?.container_id != null && { containerId: seen.container_id }),
      ...(escalated.has(k) && { escalated: escalated.get(k)?.reason ?? '' }),
    });
  }
  return views.sort((a, b) =>
    a.service === b.service ? a.host.localeCompare(b.host) : a.service < b.service ? -1 : 1,
  );
}

/** Instances that wait for a host, by name. */
export async function listPending(db: Kysely<ControllerDatabase>): Promise<PendingView[]> {
  const rows = await db.selectFrom('pending_instances').selectAll().orderBy('instance').execute();
  return rows.map((r) => ({ service: r.instance, reason: r.reason, since: r.since }));
}

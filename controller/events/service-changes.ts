import type { Kysely } from 'kysely';
import type { ServiceStatus } from '../../protocol/heartbeat.js';
import type { ControllerDatabase } from '../db/schema.js';
import type { FleetEventSink, NewFleetEvent } from './event-log.js';

type Db = Kysely<ControllerDatabase>;

/** Hosts read per statement (one parameter each). */
const HOSTS_PER_READ = 500;

/**
 * `service.state_changed` events for hosts whose observed services are about to be rewritten,
 * inside the heartbeat writer's transaction and before the rewrite, so the previous states are
 * the stored ones (a controller restart, which rewrites every host's services once, tells
 * nothing that did not change). A service no longer listed is told with `to: null`. Only the
 * state counts: a restart count or pid alone is no change.
 */
export async function appendServiceChanges(
  trx: Db,
  sink: FleetEventSink,
  hosts: readonly { readonly hostId: string; readonly services: readonly ServiceStatus[] }[],
): Promise<void> {
  if (hosts.length === 0) return;
  const ids = hosts.map((h) => h.hostId);
  const before = new Map<string, Map<string, string>>();
  const names = new Map<string, string>();
  for (let i = 0; i < ids.length; i += HOSTS_PER_READ) {
    const chunk = ids.slice(i, i + HOSTS_PER_READ);
    const rows = await trx
      .selectFrom('service_observed')
      .select(['host_id', 'service', 'state'])
      .where('host_id', 'in', chunk)
      .execute();
    for (const r of rows) {
      let states = before.get(r.host_id);
      if (!states) before.set(r.host_id, (states = new Map<string, string>()));
      states.set(r.service, r.state);
    }
    const hostRows = await trx
      .selectFrom('hosts')
      .select(['id', 'name'])
      .where('id', 'in', chunk)
      .where('decommissioned_at', 'is', null)
      .execute();
    for (const h of hostRows) names.set(h.id, h.name);
  }
  const events: NewFleetEvent[] = [];
  for (const h of hosts) {
    const name = names.get(h.hostId);
    if (name === undefined) continue;
    const host = { id: h.hostId, name };
    const prev = before.get(h.hostId) ?? new Map<string, string>();
    // Last one wins when a list names a service twice, as the writer stores it.
    const now = new Map(h.services.map((s) => [s.name, s]));
    for (const s of now.values()) {
      const from = prev.get(s.name) ?? null;
      if (from === s.state) continue;
      events.push({
        kind: 'service.state_changed',
        host,
        service: s.name,
        data: { from, to: s.state, restarts: s.restarts, lastError: s.lastError },
      });
    }
    for (const [service, from] of prev) {
      if (!now.has(service))
        events.push({ kind: 'service.state_changed', host, service, data: { from, to: null } });
    }
  }
  await sink.append(trx, events);
}

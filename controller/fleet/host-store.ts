import type { Kysely, Selectable } from 'kysely';
import type { HostDetail, PinView } from '../../protocol/admin-hosts.js';
import type { HostMetrics, ServiceState } from '../../protocol/heartbeat.js';
import type { HostClock, HostView } from '../../protocol/host.js';
import type { WipeState } from '../../protocol/wipe.js';
import type { ControllerDatabase, HostsTable, PinsTable } from '../db/schema.js';
import { deriveHostStatus } from './host-status.js';

export type HostRow = Selectable<HostsTable>;
export type PinRow = Selectable<PinsTable>;
type Db = Kysely<ControllerDatabase>;

const RECENT_EVENTS = 20;

export interface Liveness {
  readonly nowMs: number;
  readonly intervalMs: number;
  /** The last clock offset estimate of a host; when given, views carry `clock`. */
  readonly clockOf?: (hostId: string) => HostClock | undefined;
}

/** The active pin of a role: the newest one that a renewal has not superseded. */
function currentPin(pins: readonly PinRow[], role: 'agent' | 'updater'): string | null {
  const ofRole = pins.filter((p) => p.role === role && p.active === 1);
  const current = ofRole.find((p) => p.superseded_at === null) ?? ofRole[0];
  return current?.fingerprint ?? null;
}

/**
 * Where a host's wipe stands: reported (`wiped`), or `pending` for a decommissioned host that
 * was ever in use (its bundle written or a heartbeat seen), so something may still run on it.
 */
export function wipeState(row: HostRow): WipeState | null {
  if (row.wiped_at !== null) return 'wiped';
  if (row.decommissioned_at === null) return null;
  return row.last_seen !== null || row.bundle_written_at !== null ? 'pending' : null;
}

export function toHostView(row: HostRow, pins: readonly PinRow[], live: Liveness): HostView {
  const decommissioned = row.decommissioned_at !== null;
  return {
    id: row.id,
    name: row.name,
    address: row.address,
    agentPort: row.agent_port,
    updaterPort: row.updater_port,
    status: deriveHostStatus(
      { lastSeenMs: row.last_seen === null ? null : Date.parse(row.last_seen), decommissioned },
      live.nowMs,
      live.intervalMs,
    ),
    labels: JSON.parse(row.labels) as Record<string, string>,
    enrolledAt: row.enrolled_at,
    lastSeen: row.last_seen,
    agentVersion: row.agent_version,
    generation: row.generation,
    agentFingerprint: decommissioned ? null : currentPin(pins, 'agent'),
    updaterFingerprint: decommissioned ? null : currentPin(pins, 'updater'),
    metrics: row.metrics === null ? null : (JSON.parse(row.metrics) as HostMetrics),
    decommissionedAt: row.decommissioned_at,
    wipe: wipeState(row),
    wipedAt: row.wiped_at,
    ...(live.clockOf ? { clock: decommissioned ? null : (live.clockOf(row.id) ?? null) } : {}),
  };
}

async function activePinsByHost(db: Db, hostIds?: readonly string[]): Promise<Map<string, PinRow[]>> {
  let q = db.selectFrom('pins').selectAll().where('active', '=', 1).orderBy('created_at', 'desc');
  if (hostIds) {
    if (hostIds.length === 0) return new Map();
    q = q.where('host_id', 'in', hostIds);
  }
  const out = new Map<string, PinRow[]>();
  for (const pin of await q.execute()) out.set(pin.host_id, [...(out.get(pin.host_id) ?? []), pin]);
  return out;
}

export async function listHostViews(db: Db, live: Liveness): Promise<HostView[]> {
  const [rows, pins] = await Promise.all([
    db.selectFrom('hosts').selectAll().orderBy('name').orderBy('enrolled_at').execute(),
    activePinsByHost(db),
  ]);
  return rows.map((row) => toHostView(row, pins.get(row.id) ?? [], live));
}

/** The host now holding `name`, or else the most recently decommissioned one that held it. */
export async function findHostByName(db: Db, name: string): Promise<HostRow | undefined> {
  const active = await db
    .selectFrom('hosts')
    .selectAll()
    .where('name', '=', name)
    .where('decommissioned_at', 'is', null)
    .executeTakeFirst();
  if (active) return active;
  return db
    .selectFrom('hosts')
    .selectAll()
    .where('name', '=', name)
    .orderBy('decommissioned_at', 'desc')
    .limit(1)
    .executeTakeFirst();
}

export async function isNameActive(db: Db, name: string): Promise<boolean> {
  const row = await db
    .selectFrom('hosts')
    .select('id')
    .where('name', '=', name)
    .where('decommissioned_at', 'is', null)
    .executeTakeFirst();
  return row !== undefined;
}

export async function hostViewById(db: Db, id: string, live: Liveness): Promise<HostView | undefined> {
  const row = await db.selectFrom('hosts').selectAll().where('id', '=', id).executeTakeFirst();
  if (!row) return undefined;
  const pins = await activePinsByHost(db, [id]);
  return toHostView(row, pins.get(id) ?? [], live);
}

function pinView(p: PinRow): PinView {
  return {
    role: p.role === 'updater' ? 'updater' : 'agent',
    fingerprint: p.fingerprint,
    notAfter: p.not_after,
    createdAt: p.created_at,
    superseded: p.superseded_at !== null,
  };
}

export async function hostDetail(db: Db, name: string, live: Liveness): Promise<HostDetail | undefined> {
  const row = await findHostByName(db, name);
  if (!row) return undefined;
  const [pins, services, events] = await Promise.all([
    activePinsByHost(db, [row.id]),
    db.selectFrom('service_observed').selectAll().where('host_id', '=', row.id).orderBy('service').execute(),
    db
      .selectFrom('events')
      .selectAll()
      .where('host_id', '=', row.id)
      .orderBy('received_at', 'desc')
      .orderBy('time', 'desc')
      .limit(RECENT_EVENTS)
      .execute(),
  ]);
  const hostPins = pins.get(row.id) ?? [];
  return {
    host: toHostView(row, hostPins, live),
    sans: JSON.parse(row.sans) as string[],
    enrolledVia: row.enrolled_via === 'join' ? 'join' : 'bundle',
    joinSource: row.join_source,
    bundleWrittenAt: row.bundle_written_at,
    services: services.map((s) => ({
      name: s.service,
      state: s.state as ServiceState,
      restarts: s.restarts,
      lastError: s.last_error,
      pid: s.pid,
      since: s.since,
      updatedAt: s.updated_at,
    })),
    pins: row.decommissioned_at === null ? hostPins.map(pinView) : [],
    recentEvents: events.map((e) => ({
      id: e.event_id,
      type: e.type,
      time: e.time,
      service: e.service,
      generation: e.generation,
      detail: e.detail,
      receivedAt: e.received_at,
    })),
  };
}

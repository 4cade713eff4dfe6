import {
  sql,
  type Expression,
  type ExpressionBuilder,
  type Kysely,
  type Selectable,
  type SqlBool,
} from 'kysely';
import type { HostDetail, PinView } from '../../protocol/admin-hosts.js';
import { HostMetrics, type ServiceState } from '../../protocol/heartbeat.js';
import { Labels } from '../../protocol/common.js';
import { OFFLINE_AFTER_INTERVALS, STALE_AFTER_INTERVALS } from '../../protocol/constants.js';
import { CorralError, ErrorCode } from '../../protocol/errors.js';
import {
  HOST_STATUSES,
  type HostClock,
  type HostEligibility,
  type HostStatus,
  type HostView,
} from '../../protocol/host.js';
import { isoAt } from '../clock.js';
import type { WipeState } from '../../protocol/wipe.js';
import type { ControllerDatabase, HostsTable, PinsTable } from '../db/schema.js';
import { deriveHostStatus } from './host-status.js';
import { decodeJsonColumn, StoredNames } from '../db/json-column.js';

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

/** What of a pin a host view shows (a host list page reads only these columns). */
type ViewPin = Pick<PinRow, 'host_id' | 'role' | 'active' | 'superseded_at' | 'fingerprint'>;

/** The active pin of a role: the newest one that a renewal has not superseded. */
function currentPin(pins: readonly ViewPin[], role: 'agent' | 'updater'): string | null {
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

export function toHostView(row: HostRow, pins: readonly ViewPin[], live: Liveness): HostView {
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
    labels: decodeJsonColumn(Labels, row.labels, { table: 'hosts', column: 'labels', row: row.id }),
    enrolledAt: row.enrolled_at,
    lastSeen: row.last_seen,
    agentVersion: row.agent_version,
    generation: row.generation,
    agentFingerprint: decommissioned ? null : currentPin(pins, 'agent'),
    updaterFingerprint: decommissioned ? null : currentPin(pins, 'updater'),
    metrics:
      row.metrics === null
        ? null
        : decodeJsonColumn(HostMetrics, row.metrics, { table: 'hosts', column: 'metrics', row: row.id }),
    decommissionedAt: row.decommissioned_at,
    wipe: wipeState(row),
    wipedAt: row.wiped_at,
    ...(live.clockOf ? { clock: decommissioned ? null : (live.clockOf(row.id) ?? null) } : {}),
    eligibility: eligibilityOf(row),
    drainDeadline: row.drain_deadline,
  };
}

/** Draining while a drain deadline is set; ineligible while `eligible` is 0 (see HostEligibility). */
export function eligibilityOf(row: Pick<HostRow, 'eligible' | 'drain_deadline'>): HostEligibility {
  if (row.drain_deadline !== null) return 'draining';
  return row.eligible === 0 ? 'ineligible' : 'eligible';
}

/** The active pins (of `hostIds` when given), newest first; undefined for no host at all. */
function activePins(db: Db, hostIds?: readonly string[]) {
  if (hostIds?.length === 0) return undefined;
  const q = db.selectFrom('pins').where('active', '=', 1).orderBy('created_at', 'desc');
  return hostIds ? q.where('host_id', 'in', hostIds) : q;
}

async function activePinsByHost(db: Db, hostIds?: readonly string[]): Promise<Map<string, PinRow[]>> {
  const q = activePins(db, hostIds);
  return q ? byHost(await q.selectAll().execute()) : new Map();
}

/** The active pins, newest first, with only the columns a host view shows. */
async function viewPinsByHost(db: Db, hostIds?: readonly string[]): Promise<Map<string, ViewPin[]>> {
  const q = activePins(db, hostIds);
  return q
    ? byHost(await q.select(['host_id', 'role', 'active', 'superseded_at', 'fingerprint']).execute())
    : new Map();
}

function byHost<P extends { host_id: string }>(pins: readonly P[]): Map<string, P[]> {
  const out = new Map<string, P[]>();
  for (const pin of pins) {
    const list = out.get(pin.host_id);
    if (list) list.push(pin);
    else out.set(pin.host_id, [pin]);
  }
  return out;
}

/**
 * Where a page ends: the sort key (name, enrolled_at, id) of its last host. Opaque to
 * callers: base64url of a JSON array of the three strings.
 */
type CursorKey = readonly [name: string, enrolledAt: string, id: string];
/** Longest part of a decoded cursor, in characters (names are ≤ 63, ids ≤ 63, times ≤ 40). */
const MAX_CURSOR_PART_CHARS = 255;

export function encodeHostCursor(key: CursorKey): string {
  return Buffer.from(JSON.stringify(key)).toString('base64url');
}

/** The key a cursor names; throws CORRAL_ERR_VALIDATION for anything `encodeHostCursor` did not make. */
export function decodeHostCursor(cursor: string): CursorKey {
  const bad = (): CorralError =>
    new CorralError(ErrorCode.VALIDATION, 'cursor is not one this controller returned; start the list again');
  if (!/^[A-Za-z0-9_-]+$/.test(cursor)) throw bad();
  let parsed: unknown;
  try {
    parsed = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8'));
  } catch {
    // Not JSON inside: refused below like any other foreign cursor.
    throw bad();
  }
  if (!Array.isArray(parsed) || parsed.length !== 3) throw bad();
  const [name, enrolledAt, id] = parsed as unknown[];
  const part = (v: unknown): v is string => typeof v === 'string' && v.length <= MAX_CURSOR_PART_CHARS;
  if (!part(name) || !part(enrolledAt) || !part(id)) throw bad();
  return [name, enrolledAt, id];
}

/**
 * The condition on `hosts` that deriveHostStatus gives `status` for, at `live.nowMs`:
 * `last_seen` is ISO-8601 UTC text as `isoAt` writes it, so it compares in time order.
 */
function statusCondition(
  eb: ExpressionBuilder<ControllerDatabase, 'hosts'>,
  status: HostStatus,
  live: Liveness,
): Expression<SqlBool> {
  const staleFrom = isoAt(live.nowMs - STALE_AFTER_INTERVALS * live.intervalMs);
  const offlineFrom = isoAt(live.nowMs - OFFLINE_AFTER_INTERVALS * live.intervalMs);
  const active = eb('decommissioned_at', 'is', null);
  switch (status) {
    case 'decommissioned':
      return eb('decommissioned_at', 'is not', null);
    case 'pending':
      return eb.and([active, eb('last_seen', 'is', null)]);
    case 'online':
      return eb.and([active, eb('last_seen', '>', staleFrom)]);
    case 'stale':
      return eb.and([active, eb('last_seen', '<=', staleFrom), eb('last_seen', '>', offlineFrom)]);
    case 'offline':
      return eb.and([active, eb('last_seen', '<=', offlineFrom)]);
  }
}

export interface HostPage {
  readonly hosts: HostView[];
  readonly nextCursor: string | null;
}

/**
 * Up to `limit` hosts in (name, enrolled_at, id) order after `cursor`, optionally of one
 * status; one indexed range read and the page's pins, whatever the fleet's size. Throws
 * CORRAL_ERR_VALIDATION for a foreign cursor.
 */
export async function listHostPage(
  db: Db,
  live: Liveness,
  page: {
    readonly limit: number;
    readonly cursor?: string | undefined;
    readonly status?: HostStatus | undefined;
  },
): Promise<HostPage> {
  const after = page.cursor === undefined ? undefined : decodeHostCursor(page.cursor);
  let q = db.selectFrom('hosts').selectAll();
  if (after) {
    q = q.where(
      (eb) =>
        sql<SqlBool>`(${eb.ref('name')}, ${eb.ref('enrolled_at')}, ${eb.ref('id')}) > (${after[0]}, ${after[1]}, ${after[2]})`,
    );
  }
  const status = page.status;
  if (status !== undefined) q = q.where((eb) => statusCondition(eb, status, live));
  // One more than asked says whether another page follows.
  const rows = await q
    .orderBy('name')
    .orderBy('enrolled_at')
    .orderBy('id')
    .limit(page.limit + 1)
    .execute();
  const more = rows.length > page.limit;
  const shown = more ? rows.slice(0, page.limit) : rows;
  const pins = await viewPinsByHost(
    db,
    shown.map((r) => r.id),
  );
  const last = shown.at(-1);
  return {
    hosts: shown.map((row) => toHostView(row, pins.get(row.id) ?? [], live)),
    nextCursor: more && last ? encodeHostCursor([last.name, last.enrolled_at, last.id]) : null,
  };
}

/**
 * Hosts by status, counted in SQL: one statement of a count per status, each a range of the
 * `hosts_liveness` index (decommissioned_at, last_seen), so no host row is read, no host view
 * built, and no expression evaluated per host (a CASE per status over every host cost four
 * times as much at 60k hosts).
 */
export async function countHostsByStatus(db: Db, live: Liveness): Promise<Record<HostStatus, number>> {
  const row = await db
    .selectNoFrom((eb) =>
      HOST_STATUSES.map((s) =>
        eb
          .selectFrom('hosts')
          .select((c) => c.fn.countAll<number>().as('n'))
          .where((c) => statusCondition(c, s, live))
          .as(s),
      ),
    )
    .executeTakeFirstOrThrow();
  const counts = Object.fromEntries(HOST_STATUSES.map((s) => [s, 0])) as Record<HostStatus, number>;
  for (const s of HOST_STATUSES) counts[s] = Number((row as Record<string, unknown>)[s] ?? 0);
  return counts;
}

export async function listHostViews(db: Db, live: Liveness): Promise<HostView[]> {
  const [rows, pins] = await Promise.all([
    db.selectFrom('hosts').selectAll().orderBy('name').orderBy('enrolled_at').execute(),
    viewPinsByHost(db),
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
  const pins = await viewPinsByHost(db, [id]);
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
    sans: decodeJsonColumn(StoredNames, row.sans, { table: 'hosts', column: 'sans', row: row.id }),
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
      ...(s.runtime !== null && { runtime: s.runtime }),
      ...(s.image !== null && { image: s.image }),
      ...(s.container_id !== null && { containerId: s.container_id }),
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

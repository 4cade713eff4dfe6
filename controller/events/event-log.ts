import { randomUUID } from 'node:crypto';
import { sql, type Kysely, type Selectable } from 'kysely';
import {
  FLEET_EVENT_KINDS,
  FleetEventData,
  MAX_EVENT_FIELDS,
  MAX_EVENT_TEXT,
  type EventsPage,
  type FleetEvent,
  type FleetEventKind,
} from '../../protocol/fleet-events.js';
import { isoAt, type Clock } from '../clock.js';
import { lockOrderedAppend } from '../db/audit-lock.js';
import { dialectOf } from '../db/dialect-of.js';
import { decodeJsonColumn } from '../db/json-column.js';
import type { ControllerDatabase } from '../db/schema.js';
import { ControllerError, ControllerErrorCode } from '../errors.js';
import type { FleetEventsTable } from './event-tables.js';

type Db = Kysely<ControllerDatabase>;
export type EventValue = string | number | boolean | null;

/** An event as a producer hands it over; the log gives it its cursor, id and time. */
export interface NewFleetEvent {
  readonly kind: FleetEventKind;
  readonly host?: { readonly id: string; readonly name: string } | null;
  readonly service?: string | null;
  readonly operationId?: string | null;
  readonly data?: Readonly<Record<string, EventValue | undefined>>;
}

/**
 * Where producers put fleet events: always inside the transaction of the change they tell
 * about, so the event commits with it or not at all, and cursors follow commit order (SQLite
 * has one writer; on PostgreSQL, where several connections and controllers write, the append
 * holds the ordered-append lock until its transaction ends).
 */
export interface FleetEventSink {
  append(trx: Db, events: readonly NewFleetEvent[]): Promise<void>;
}

const KINDS: ReadonlySet<string> = new Set(FLEET_EVENT_KINDS);
/** Rows per INSERT (9 parameters each). */
const ROWS_PER_INSERT = 100;

/** `text` cut to `max` UTF-16 units without leaving half a surrogate pair at the end. */
export function cutText(text: string, max: number): string {
  if (text.length <= max) return text;
  const cut = text.slice(0, max);
  const last = cut.charCodeAt(cut.length - 1);
  return last >= 0xd800 && last <= 0xdbff ? cut.slice(0, -1) : cut;
}

/** The event's data as stored: undefined fields dropped, text bounded, at most MAX_EVENT_FIELDS. */
export function boundData(data: NewFleetEvent['data']): Record<string, EventValue> {
  const out: Record<string, EventValue> = {};
  let n = 0;
  for (const [k, v] of Object.entries(data ?? {})) {
    if (v === undefined) continue;
    if (n++ >= MAX_EVENT_FIELDS) break;
    out[k] =
      typeof v === 'string'
        ? cutText(v, MAX_EVENT_TEXT)
        : typeof v === 'number' && !Number.isFinite(v)
          ? null
          : v;
  }
  return out;
}

export function createEventSink(o: {
  readonly clock: Clock;
  /** Told after rows were handed to the transaction (not yet committed): how many. */
  readonly onAppend?: (count: number) => void;
  /** Told of each `host.enrolled` appended (its status is now `pending`). */
  readonly onEnrolled?: (hostId: string) => void;
}): FleetEventSink {
  return {
    async append(trx, events) {
      if (events.length === 0) return;
      await lockOrderedAppend(trx);
      const time = isoAt(o.clock.now());
      const rows = events.map((e) => ({
        id: randomUUID(),
        kind: e.kind,
        time,
        host_id: e.host?.id ?? null,
        host_name: e.host?.name ?? null,
        service: e.service ?? null,
        operation_id: e.operationId ?? null,
        data: JSON.stringify(boundData(e.data)),
      }));
      for (let i = 0; i < rows.length; i += ROWS_PER_INSERT) {
        await trx
          .insertInto('fleet_events')
          .values(rows.slice(i, i + ROWS_PER_INSERT))
          .execute();
      }
      // An enrollment's event and the status it starts from commit together (host-transitions.ts).
      for (const e of events) {
        if (e.kind !== 'host.enrolled' || !e.host) continue;
        await trx
          .insertInto('fleet_host_status')
          .values({ host_id: e.host.id, status: 'pending', changed_at: time })
          .onConflict((oc) => oc.column('host_id').doUpdateSet({ status: 'pending', changed_at: time }))
          .execute();
        o.onEnrolled?.(e.host.id);
      }
      o.onAppend?.(rows.length);
    },
  };
}

/** A stored row as the API shows it; throws CORRAL_ERR_ROW_DAMAGED for a row Corral did not write. */
export function toFleetEvent(row: Selectable<FleetEventsTable>): FleetEvent {
  if (!KINDS.has(row.kind)) {
    throw new ControllerError(
      ControllerErrorCode.ROW_DAMAGED,
      `fleet_events row ${row.cursor}, column kind: ${JSON.stringify(row.kind.slice(0, 64))} is no event kind`,
    );
  }
  return {
    cursor: row.cursor,
    id: row.id,
    kind: row.kind as FleetEventKind,
    time: row.time,
    host: row.host_id !== null && row.host_name !== null ? { id: row.host_id, name: row.host_name } : null,
    service: row.service,
    operationId: row.operation_id,
    data: decodeJsonColumn(FleetEventData, row.data, {
      table: 'fleet_events',
      column: 'data',
      row: row.cursor,
    }),
  };
}

/** Up to `limit` events after `since`, oldest first. */
export async function readEvents(db: Db, since: number, limit: number): Promise<FleetEvent[]> {
  const rows = await db
    .selectFrom('fleet_events')
    .selectAll()
    .where('cursor', '>', since)
    .orderBy('cursor')
    .limit(limit)
    .execute();
  return rows.map(toFleetEvent);
}

/**
 * The newest cursor ever handed out (AUTOINCREMENT's own counter; on PostgreSQL the identity
 * column's sequence), so it holds even when retention deleted every event.
 */
export async function headCursor(db: Db): Promise<number> {
  const { rows } =
    dialectOf(db) === 'sqlite'
      ? await sql<{ seq: number }>`SELECT seq FROM sqlite_sequence WHERE name = 'fleet_events'`.execute(db)
      : await sql<{ seq: number }>`SELECT CASE WHEN is_called THEN last_value ELSE 0 END AS seq
          FROM fleet_events_cursor_seq`.execute(db);
  return Number(rows[0]?.seq ?? 0);
}

/** The oldest cursor stored, or undefined when there is none (nothing yet, or all pruned). */
export async function oldestCursor(db: Db): Promise<number | undefined> {
  const row = await db
    .selectFrom('fleet_events')
    .select('cursor')
    .orderBy('cursor')
    .limit(1)
    .executeTakeFirst();
  return row === undefined ? undefined : Number(row.cursor);
}

/**
 * Whether events right after `since` are gone, given the first stored after it (`first`) and
 * the head (read before the events). Retention deletes only from the oldest end, so a cursor
 * missing at or above the oldest one kept was never an event: on PostgreSQL a transaction
 * that rolled back still used up its sequence values. Only a `since` below the oldest kept,
 * or below the head when nothing is kept, lost events. The oldest is read (after the events)
 * only when `first` does not follow `since` at once, so a reader keeping up pays nothing.
 */
export async function isTruncated(
  db: Db,
  since: number,
  first: number | undefined,
  head: number,
): Promise<boolean> {
  if (first === since + 1) return false;
  const oldest = await oldestCursor(db);
  if (oldest === undefined) return since < head;
  return since + 1 < Math.min(oldest, first ?? oldest);
}

/** One page of `GET /v1/events`. */
export async function readPage(db: Db, since: number, limit: number): Promise<EventsPage> {
  // Head first: an event committed after it is simply newer than the head it reports.
  const head = await headCursor(db);
  const events = await readEvents(db, since, limit);
  const last = events.at(-1)?.cursor;
  return {
    events,
    cursor: last ?? since,
    head: Math.max(head, last ?? 0),
    truncated: await isTruncated(db, since, events[0]?.cursor, head),
  };
}

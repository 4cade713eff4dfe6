import { Type, type Static } from '@sinclair/typebox';
import { HostId, InstanceName, Name, Timestamp } from './common.js';

/**
 * The fleet event stream (admin API `GET /v1/events`, also as server-sent events): one ordered
 * log of changes across the fleet, each event with a cursor that only ever grows. Host kinds
 * follow the host's status (`host.online` when a host that was not online sends a heartbeat,
 * `host.stale` / `host.offline` when its heartbeats stop); each status change is told once.
 * `approval.*` are reserved for operator approvals, which nothing emits yet.
 */
export const FLEET_EVENT_KINDS = [
  'host.enrolled',
  'host.online',
  'host.stale',
  'host.offline',
  'host.decommissioned',
  'service.state_changed',
  'operation.started',
  'operation.finished',
  'release.updated',
  'release.rolled_back',
  'approval.pending',
  'approval.decided',
] as const;
export type FleetEventKind = (typeof FLEET_EVENT_KINDS)[number];
export const FleetEventKindSchema = Type.Union(FLEET_EVENT_KINDS.map((k) => Type.Literal(k)));

/** Longest text value in an event's `data` (service errors and updater reasons are worker text). */
export const MAX_EVENT_TEXT = 2048;
/** Fields of an event's `data` at most. */
export const MAX_EVENT_FIELDS = 16;
export const DEFAULT_EVENTS_PAGE = 100;
export const MAX_EVENTS_PAGE = 1000;
/** Largest cursor a client may send (safe integers only, as decimal text of at most 15 digits). */
export const MAX_EVENT_CURSOR = 999_999_999_999_999;

/** Values of an event's `data`: flat, typed, bounded. Worker-sent text in it is stored as sent. */
export const FleetEventData = Type.Record(
  Type.String({ pattern: '^[a-zA-Z][a-zA-Z0-9]{0,31}$' }),
  Type.Union([Type.String({ maxLength: MAX_EVENT_TEXT }), Type.Number(), Type.Boolean(), Type.Null()]),
  { maxProperties: MAX_EVENT_FIELDS },
);
export type FleetEventData = Static<typeof FleetEventData>;

export const FleetEvent = Type.Object(
  {
    /** Position in the stream: strictly increasing, never reused. Resume with `since`. */
    cursor: Type.Integer({ minimum: 1, maximum: MAX_EVENT_CURSOR }),
    /** Unique id (also the webhook's `Corral-Event-Id` header): receivers dedupe on it. */
    id: Type.String({ pattern: '^[0-9a-f-]{36}$' }),
    kind: FleetEventKindSchema,
    time: Timestamp,
    host: Type.Union([Type.Object({ id: HostId, name: Name }, { additionalProperties: false }), Type.Null()]),
    service: Type.Union([InstanceName, Type.Null()]),
    operationId: Type.Union([Type.String({ maxLength: 64 }), Type.Null()]),
    data: FleetEventData,
  },
  { additionalProperties: false },
);
export type FleetEvent = Static<typeof FleetEvent>;

export const EventsQuery = Type.Object(
  {
    /** Events after this cursor (default 0: from the oldest kept). */
    since: Type.Optional(Type.Integer({ minimum: 0, maximum: MAX_EVENT_CURSOR })),
    limit: Type.Optional(Type.Integer({ minimum: 1, maximum: MAX_EVENTS_PAGE })),
    /** Stream as server-sent events (as does `Accept: text/event-stream`). */
    follow: Type.Optional(Type.Boolean()),
  },
  { additionalProperties: false },
);
export type EventsQuery = Static<typeof EventsQuery>;

export const EventsPage = Type.Object(
  {
    events: Type.Array(FleetEvent, { maxItems: MAX_EVENTS_PAGE }),
    /** Pass back as `since` for the next page: the last event's cursor, or `since` itself. */
    cursor: Type.Integer({ minimum: 0 }),
    /** The newest cursor the controller has handed out. */
    head: Type.Integer({ minimum: 0 }),
    /** Events after `since` were deleted by retention before this read (some are missing). */
    truncated: Type.Boolean(),
  },
  { additionalProperties: false },
);
export type EventsPage = Static<typeof EventsPage>;

/**
 * The SSE framing of the stream: each event is `id: CURSOR`, `event: KIND`, `data: JSON` (one
 * line) and a blank line; `: keep-alive` comments while nothing happens. A reconnect with
 * `Last-Event-ID: CURSOR` (or `since=CURSOR`) continues after that event. When retention took
 * events the reader had not seen, one `event: truncated` with `data: {"after":C,"next":N}`
 * comes first (no id).
 */
export const SSE_TRUNCATED_EVENT = 'truncated';
export { SSE_CONTENT_TYPE } from './constants.js';

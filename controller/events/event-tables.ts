import type { Generated } from 'kysely';

/** The fleet event tables as kysely sees them (see migration-events.ts). */

/** One fleet event. `cursor` is SQLite's AUTOINCREMENT rowid: it only grows, never reused. */
export interface FleetEventsTable {
  cursor: Generated<number>;
  id: string;
  kind: string;
  time: string;
  host_id: string | null;
  host_name: string | null;
  service: string | null;
  operation_id: string | null;
  /** JSON FleetEventData. */
  data: string;
}

/** The host status last told in the stream, per host: each change is told once, across restarts. */
export interface FleetHostStatusTable {
  host_id: string;
  /** 'pending' | 'online' | 'stale' | 'offline' | 'decommissioned' */
  status: string;
  changed_at: string;
}

export interface WebhooksTable {
  name: string;
  url: string;
  /** JSON array of event filters (kinds, `group.*`, `*`). */
  events: string;
  /** The HMAC key, as the operator gave it or the controller made it: never in a view or a log. */
  secret: string;
  allow_http: number;
  created_at: string;
  created_by: string;
  /** The last event cursor already turned into deliveries for this webhook. */
  cursor: number;
}

/** The outbox and delivery log: one row per event per webhook. */
export interface WebhookDeliveriesTable {
  id: Generated<number>;
  webhook: string;
  event_cursor: number;
  event_id: string;
  kind: string;
  /** The exact JSON body POSTed (and signed) on every attempt. */
  body: string;
  /** 'pending' | 'delivered' | 'failed' */
  state: string;
  attempts: Generated<number>;
  created_at: string;
  next_attempt_at: string | null;
  last_attempt_at: string | null;
  last_status: number | null;
  last_error: string | null;
  delivered_at: string | null;
}

import { Type, type Static } from '@sinclair/typebox';
import { Name, Timestamp } from './common.js';
import { FLEET_EVENT_KINDS } from './fleet-events.js';

/**
 * Webhooks (admin API `/v1/webhooks`): fleet events POSTed as JSON to operator-chosen URLs,
 * signed, retried, logged. The body of a delivery is the FleetEvent itself. Headers:
 *
 * - `Corral-Event-Id`: the event's id (the same on every retry: dedupe on it);
 * - `Corral-Event-Kind`: the event's kind;
 * - `Corral-Timestamp`: Unix seconds when this attempt was signed;
 * - `Corral-Signature`: `v1=` and the lowercase hex HMAC-SHA256, keyed with the webhook's
 *   secret, of `TIMESTAMP.BODY` (the header's digits, a dot, the raw body bytes).
 *
 * A receiver recomputes the HMAC, compares in constant time, and rejects a timestamp more
 * than a few minutes from its own clock (a replayed delivery).
 */
export const WEBHOOK_HEADERS = {
  eventId: 'corral-event-id',
  eventKind: 'corral-event-kind',
  timestamp: 'corral-timestamp',
  signature: 'corral-signature',
  webhook: 'corral-webhook',
} as const;
export const WEBHOOK_SIGNATURE_VERSION = 'v1';

/** Longest webhook URL, in bytes. */
export const MAX_WEBHOOK_URL_BYTES = 2048;
export const MIN_WEBHOOK_SECRET_CHARS = 16;
export const MAX_WEBHOOK_SECRET_CHARS = 512;
export const MAX_WEBHOOKS = 64;
export const DEFAULT_DELIVERIES_PAGE = 50;
export const MAX_DELIVERIES_PAGE = 1000;

/** What a webhook subscribes to: a kind, a group (`host.*`), or `*` for every kind. */
const groups = [...new Set(FLEET_EVENT_KINDS.map((k) => `${k.split('.')[0] ?? ''}.*`))];
export const WEBHOOK_EVENT_FILTERS: readonly string[] = ['*', ...groups, ...FLEET_EVENT_KINDS];
export const WebhookEventFilter = Type.Union(WEBHOOK_EVENT_FILTERS.map((f) => Type.Literal(f)));

export const WebhookNameParams = Type.Object({ name: Name }, { additionalProperties: false });

export const WebhookAddRequest = Type.Object(
  {
    name: Name,
    url: Type.String({ minLength: 1, maxLength: MAX_WEBHOOK_URL_BYTES }),
    events: Type.Array(WebhookEventFilter, { minItems: 1, maxItems: WEBHOOK_EVENT_FILTERS.length }),
    /** Printable ASCII; absent: the controller makes one and returns it once. */
    secret: Type.Optional(
      Type.String({
        minLength: MIN_WEBHOOK_SECRET_CHARS,
        maxLength: MAX_WEBHOOK_SECRET_CHARS,
        pattern: '^[\\x21-\\x7e]+$',
      }),
    ),
    /** Allow plain http to a host other than loopback (the body and signature travel in clear). */
    allowHttp: Type.Optional(Type.Boolean()),
  },
  { additionalProperties: false },
);
export type WebhookAddRequest = Static<typeof WebhookAddRequest>;

export const WebhookView = Type.Object(
  {
    name: Name,
    url: Type.String({ maxLength: MAX_WEBHOOK_URL_BYTES }),
    events: Type.Array(Type.String({ maxLength: 64 }), { maxItems: WEBHOOK_EVENT_FILTERS.length }),
    allowHttp: Type.Boolean(),
    createdAt: Timestamp,
    createdBy: Type.String({ maxLength: 128 }),
    /** Deliveries waiting for their next attempt. */
    pending: Type.Integer({ minimum: 0 }),
    delivered: Type.Integer({ minimum: 0 }),
    /** Deliveries given up on (every attempt failed for 24 h). */
    failed: Type.Integer({ minimum: 0 }),
    lastDeliveredAt: Type.Union([Timestamp, Type.Null()]),
  },
  { additionalProperties: false },
);
export type WebhookView = Static<typeof WebhookView>;

export const WebhookAddResponse = Type.Object(
  {
    webhook: WebhookView,
    /** Only when the controller made the secret: shown this once, never again. */
    secret: Type.Optional(Type.String({ maxLength: MAX_WEBHOOK_SECRET_CHARS })),
  },
  { additionalProperties: false },
);
export type WebhookAddResponse = Static<typeof WebhookAddResponse>;

export const WebhookListResponse = Type.Object(
  { webhooks: Type.Array(WebhookView, { maxItems: MAX_WEBHOOKS }) },
  { additionalProperties: false },
);
export type WebhookListResponse = Static<typeof WebhookListResponse>;

export const WebhookRemoveResponse = Type.Object(
  { removed: Name, droppedDeliveries: Type.Integer({ minimum: 0 }) },
  { additionalProperties: false },
);
export type WebhookRemoveResponse = Static<typeof WebhookRemoveResponse>;

export const DELIVERY_STATES = ['pending', 'delivered', 'failed'] as const;
export type DeliveryState = (typeof DELIVERY_STATES)[number];

export const DeliveryView = Type.Object(
  {
    id: Type.Integer({ minimum: 1 }),
    eventId: Type.String({ maxLength: 64 }),
    eventCursor: Type.Integer({ minimum: 1 }),
    kind: Type.String({ maxLength: 64 }),
    state: Type.Union(DELIVERY_STATES.map((s) => Type.Literal(s))),
    attempts: Type.Integer({ minimum: 0 }),
    createdAt: Timestamp,
    lastAttemptAt: Type.Union([Timestamp, Type.Null()]),
    /** HTTP status of the last attempt (null: no answer). */
    lastStatus: Type.Union([Type.Integer(), Type.Null()]),
    /** Why the last attempt failed, when it did. */
    lastError: Type.Union([Type.String({ maxLength: 512 }), Type.Null()]),
    nextAttemptAt: Type.Union([Timestamp, Type.Null()]),
    deliveredAt: Type.Union([Timestamp, Type.Null()]),
  },
  { additionalProperties: false },
);
export type DeliveryView = Static<typeof DeliveryView>;

export const DeliveriesQuery = Type.Object(
  { limit: Type.Optional(Type.Integer({ minimum: 1, maximum: MAX_DELIVERIES_PAGE })) },
  { additionalProperties: false },
);

export const DeliveriesResponse = Type.Object(
  {
    webhook: Name,
    /** Newest first. */
    deliveries: Type.Array(DeliveryView, { maxItems: MAX_DELIVERIES_PAGE }),
  },
  { additionalProperties: false },
);
export type DeliveriesResponse = Static<typeof DeliveriesResponse>;

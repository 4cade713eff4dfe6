import { Type } from '@sinclair/typebox';
import type { Kysely, Selectable } from 'kysely';
import {
  DEFAULT_DELIVERIES_PAGE,
  MAX_WEBHOOKS,
  WEBHOOK_EVENT_FILTERS,
  type DeliveriesResponse,
  type DeliveryState,
  type DeliveryView,
  type WebhookAddRequest,
  type WebhookAddResponse,
  type WebhookRemoveResponse,
  type WebhookView,
} from '../../protocol/admin-notify.js';
import type { FleetEventKind } from '../../protocol/fleet-events.js';
import { CorralError, ErrorCode } from '../../protocol/errors.js';
import type { AuditLog } from '../audit/audit-log.js';
import { isoAt, type Clock } from '../clock.js';
import { decodeJsonColumn } from '../db/json-column.js';
import type { ControllerDatabase } from '../db/schema.js';
import { newSecret } from '../secrets.js';
import type { WebhookDeliveriesTable, WebhooksTable } from './event-tables.js';
import { headCursor } from './event-log.js';
import { checkWebhookUrl, urlOrigin } from './webhook-target.js';

type Db = Kysely<ControllerDatabase>;

/** Prefix of the secrets the controller makes for webhooks (newSecret: 256 random bits). */
export const WEBHOOK_SECRET_PREFIX = 'corral_whsec';
const StoredFilters = Type.Array(Type.Union(WEBHOOK_EVENT_FILTERS.map((f) => Type.Literal(f))), {
  maxItems: WEBHOOK_EVENT_FILTERS.length,
});

/** A webhook as the dispatcher holds it (the secret included: it never leaves the process). */
export interface Webhook {
  readonly name: string;
  readonly url: string;
  readonly secret: string;
  readonly filters: readonly string[];
  /** Cursor of the last event already turned into deliveries. */
  readonly cursor: number;
}

/** Whether a webhook with these filters wants events of `kind`. */
export function wants(filters: readonly string[], kind: FleetEventKind): boolean {
  const group = `${kind.split('.')[0] ?? ''}.*`;
  return filters.some((f) => f === '*' || f === kind || f === group);
}

export function toWebhook(row: Selectable<WebhooksTable>): Webhook {
  return {
    name: row.name,
    url: row.url,
    secret: row.secret,
    filters: decodeJsonColumn(StoredFilters, row.events, {
      table: 'webhooks',
      column: 'events',
      row: row.name,
    }),
    cursor: row.cursor,
  };
}

function toDelivery(row: Selectable<WebhookDeliveriesTable>): DeliveryView {
  return {
    id: row.id,
    eventId: row.event_id,
    eventCursor: row.event_cursor,
    kind: row.kind,
    state: row.state as DeliveryState,
    attempts: row.attempts,
    createdAt: row.created_at,
    lastAttemptAt: row.last_attempt_at,
    lastStatus: row.last_status,
    lastError: row.last_error,
    nextAttemptAt: row.state === 'pending' ? row.next_attempt_at : null,
    deliveredAt: row.delivered_at,
  };
}

export interface WebhookStore {
  /** Checks the target and adds the webhook; it gets the events appended from now on. */
  add(request: WebhookAddRequest, actor: string): Promise<WebhookAddResponse>;
  list(): Promise<WebhookView[]>;
  /** Removes the webhook and its delivery log (pending deliveries are dropped, and counted). */
  remove(name: string, actor: string): Promise<WebhookRemoveResponse>;
  deliveries(name: string, limit?: number): Promise<DeliveriesResponse>;
  /** Every webhook, secrets included (the dispatcher's view). */
  all(): Promise<Webhook[]>;
}

/**
 * Webhooks in the database. The secret is stored as given (an HMAC key must be usable, so it
 * cannot be hashed like tokens) in the controller's private database, returned only once when
 * the controller made it, and never put in a view, an audit entry or a log line; those name
 * the URL's origin, not its path (which may carry a token of the receiver's).
 */
export function createWebhookStore(o: {
  readonly db: Db;
  readonly readDb: Db;
  readonly audit: AuditLog;
  readonly clock: Clock;
  /** Told the webhook's name after it was added or removed (the dispatcher reloads). */
  readonly onChange: (name: string) => void;
}): WebhookStore {
  const { db, readDb } = o;

  async function views(rows: readonly Selectable<WebhooksTable>[]): Promise<WebhookView[]> {
    const names = rows.map((r) => r.name);
    const counts =
      names.length === 0
        ? []
        : await readDb
            .selectFrom('webhook_deliveries')
            .select((eb) => [
              'webhook',
              'state',
              eb.fn.countAll<number>().as('n'),
              eb.fn.max('delivered_at').as('last'),
            ])
            .where('webhook', 'in', names)
            .groupBy(['webhook', 'state'])
            .execute();
    return rows.map((row) => {
      const of = (state: DeliveryState) => counts.find((c) => c.webhook === row.name && c.state === state);
      return {
        name: row.name,
        url: row.url,
        events: toWebhook(row).filters.slice(),
        allowHttp: row.allow_http === 1,
        createdAt: row.created_at,
        createdBy: row.created_by,
        pending: Number(of('pending')?.n ?? 0),
        delivered: Number(of('delivered')?.n ?? 0),
        failed: Number(of('failed')?.n ?? 0),
        lastDeliveredAt: of('delivered')?.last ?? null,
      };
    });
  }

  return {
    async add(request, actor) {
      const allowHttp = request.allowHttp === true;
      const url = checkWebhookUrl(request.url, allowHttp).href;
      const generated = request.secret === undefined ? newSecret(WEBHOOK_SECRET_PREFIX) : undefined;
      const secret = request.secret ?? generated ?? '';
      const events = [...new Set(request.events)];
      const nowIso = isoAt(o.clock.now());
      await db.transaction().execute(async (trx) => {
        const taken = await trx
          .selectFrom('webhooks')
          .select('name')
          .where('name', '=', request.name)
          .executeTakeFirst();
        if (taken) throw new CorralError(ErrorCode.NAME_TAKEN, `a webhook named ${request.name} exists`);
        const count = await trx
          .selectFrom('webhooks')
          .select((eb) => eb.fn.countAll<number>().as('n'))
          .executeTakeFirstOrThrow();
        if (Number(count.n) >= MAX_WEBHOOKS) {
          throw new CorralError(ErrorCode.CONFLICT, `at most ${MAX_WEBHOOKS} webhooks; remove one first`);
        }
        await trx
          .insertInto('webhooks')
          .values({
            name: request.name,
            url,
            events: JSON.stringify(events),
            secret,
            allow_http: allowHttp ? 1 : 0,
            created_at: nowIso,
            created_by: actor,
            cursor: await headCursor(trx),
          })
          .execute();
        await o.audit.append(
          {
            actor,
            action: 'webhook-add',
            target: request.name,
            details: { origin: urlOrigin(url), events, allowHttp, secret: generated ? 'generated' : 'given' },
          },
          trx,
        );
      });
      o.onChange(request.name);
      const row = await db
        .selectFrom('webhooks')
        .selectAll()
        .where('name', '=', request.name)
        .executeTakeFirstOrThrow();
      const [view] = await views([row]);
      if (!view) throw new CorralError(ErrorCode.INTERNAL, 'webhook vanished');
      return { webhook: view, ...(generated !== undefined && { secret: generated }) };
    },

    async list() {
      return views(await readDb.selectFrom('webhooks').selectAll().orderBy('name').execute());
    },

    async remove(name, actor) {
      const dropped = await db.transaction().execute(async (trx) => {
        const row = await trx
          .selectFrom('webhooks')
          .select('url')
          .where('name', '=', name)
          .executeTakeFirst();
        if (!row) throw new CorralError(ErrorCode.NOT_FOUND, `no webhook named ${name}`);
        const pending = await trx
          .selectFrom('webhook_deliveries')
          .select((eb) => eb.fn.countAll<number>().as('n'))
          .where('webhook', '=', name)
          .where('state', '=', 'pending')
          .executeTakeFirstOrThrow();
        await trx.deleteFrom('webhook_deliveries').where('webhook', '=', name).execute();
        await trx.deleteFrom('webhooks').where('name', '=', name).execute();
        await o.audit.append(
          {
            actor,
            action: 'webhook-remove',
            target: name,
            details: { origin: urlOrigin(row.url), droppedDeliveries: Number(pending.n) },
          },
          trx,
        );
        return Number(pending.n);
      });
      o.onChange(name);
      return { removed: name, droppedDeliveries: dropped };
    },

    async deliveries(name, limit = DEFAULT_DELIVERIES_PAGE) {
      const hook = await readDb
        .selectFrom('webhooks')
        .select('name')
        .where('name', '=', name)
        .executeTakeFirst();
      if (!hook) throw new CorralError(ErrorCode.NOT_FOUND, `no webhook named ${name}`);
      const rows = await readDb
        .selectFrom('webhook_deliveries')
        .selectAll()
        .where('webhook', '=', name)
        .orderBy('id', 'desc')
        .limit(limit)
        .execute();
      return { webhook: name, deliveries: rows.map(toDelivery) };
    },

    async all() {
      return (await db.selectFrom('webhooks').selectAll().orderBy('name').execute()).map(toWebhook);
    },
  };
}

import type { Kysely } from 'kysely';
import type { Logger } from 'pino';
import type { AuditLog } from '../audit/audit-log.js';
import type { Clock } from '../clock.js';
import type { ControllerDatabase } from '../db/schema.js';
import type { HeartbeatObserver } from '../fleet/heartbeat-writer.js';
import { createEventSink, type FleetEventSink } from './event-log.js';
import {
  checkFleetEventRetention,
  DEFAULT_FLEET_EVENT_RETENTION,
  startFleetPruner,
  type FleetEventRetention,
  type FleetPruner,
} from './fleet-retention.js';
import { createHeadWatcher, type HeadWatcher } from './head-watcher.js';
import { createHostTransitions } from './host-transitions.js';
import { appendServiceChanges } from './service-changes.js';
import {
  createWebhookDispatcher,
  DEFAULT_WEBHOOK_DELIVERY,
  type WebhookDeliverySettings,
} from './webhook-dispatcher.js';
import { createWebhookStore, type WebhookStore } from './webhook-store.js';

type Db = Kysely<ControllerDatabase>;

/** Follow streams open at once at most; one more is refused with 503. */
export const MAX_EVENT_STREAMS = 64;
/** Retention runs early once this share of `maxCount` was appended since it last ran. */
const PRUNE_AFTER_SHARE = 0.1;

export interface FleetEventsOptions {
  readonly retention?: Partial<FleetEventRetention>;
  readonly webhooks?: Partial<WebhookDeliverySettings>;
  /** How often hosts are looked at for going stale or offline, in ms (default: half an interval). */
  readonly sweepEveryMs?: number;
  /** Keep-alive comments on an idle follow stream, in ms. */
  readonly keepAliveMs?: number;
  /** Randomness of webhook backoff. */
  readonly random?: () => number;
  /**
   * Retention, webhook delivery and host status events run only while this says so (the
   * leader); default always.
   */
  readonly leader?: () => boolean;
  /** Other controllers share the database (host-transitions.ts reads their heartbeats). */
  readonly peers?: boolean;
  /** Told the name of a webhook added or removed here, after the change committed (to tell the others). */
  readonly onWebhookChanged?: (name: string) => void;
}

/** The fleet event stream and everything around it, as the controller wires it. */
export interface FleetEvents {
  /** For producers: events commit with the change they tell about. */
  readonly sink: FleetEventSink;
  /** For the heartbeat writer: service state changes and host liveness. */
  readonly heartbeats: HeartbeatObserver;
  readonly webhooks: WebhookStore;
  readonly head: HeadWatcher;
  readonly readDb: Db;
  readonly keepAliveMs: number | undefined;
  /** Open follow streams; `tryOpenStream` refuses past MAX_EVENT_STREAMS. */
  tryOpenStream(): (() => void) | undefined;
  /** For `pins.onRevoked`: a decommissioned (or replaced) host's status is told. */
  hostRevoked(hostId: string): void;
  /** Webhooks were added or removed elsewhere (another controller): the dispatcher reloads them. */
  webhooksChanged(): void;
  /** Tells what changed while no controller ran, starts liveness sweeps, retention and webhooks. */
  start(): Promise<void>;
  /** For ClusterLink.whenAcquired: host status events go on from what the database says was told. */
  takeOver(): Promise<void>;
  /** Waits for host status checks queued so far. */
  settle(): Promise<void>;
  metricsLines(): string[];
  close(): Promise<void>;
}

export function createFleetEvents(o: {
  readonly db: Db;
  readonly readDb: Db;
  readonly clock: Clock;
  readonly log: Logger;
  readonly audit: AuditLog;
  readonly intervalMs: number;
  readonly options?: FleetEventsOptions;
}): FleetEvents {
  const { db, readDb, clock, log } = o;
  const retention: FleetEventRetention = { ...DEFAULT_FLEET_EVENT_RETENTION, ...o.options?.retention };
  checkFleetEventRetention(retention);
  const settings: WebhookDeliverySettings = { ...DEFAULT_WEBHOOK_DELIVERY, ...o.options?.webhooks };
  const head = createHeadWatcher({ readDb, log });
  let pruner: FleetPruner | undefined;
  let appended = 0;
  let pruned = 0;
  let streams = 0;
  const pruneAfter = Math.max(1, Math.floor(retention.maxCount * PRUNE_AFTER_SHARE));
  const sink = createEventSink({
    clock,
    onAppend(count) {
      head.nudge();
      appended += count;
      if (appended >= pruneAfter && pruner) {
        appended = 0;
        pruner.runNow().catch((err: unknown) => log.warn({ err }, 'pruning fleet events failed; will retry'));
      }
    },
    onEnrolled: (hostId) => transitions.enrolled(hostId),
  });
  const transitions = createHostTransitions({
    db,
    sink,
    clock,
    log,
    intervalMs: o.intervalMs,
    sweepEveryMs: o.options?.sweepEveryMs ?? Math.max(50, Math.floor(o.intervalMs / 2)),
    ...(o.options?.leader && { leader: o.options.leader }),
    ...(o.options?.peers !== undefined && { peers: o.options.peers }),
  });
  const dispatcher = createWebhookDispatcher({
    db,
    readDb,
    clock,
    log: log.child({ component: 'webhooks' }),
    head,
    loadWebhooks: () => webhooks.all(),
    settings,
    ...(o.options?.random && { random: o.options.random }),
    ...(o.options?.leader && { leader: o.options.leader }),
  });
  const webhooks = createWebhookStore({
    db,
    readDb,
    audit: o.audit,
    clock,
    onChange: (name) => {
      dispatcher.reload();
      o.options?.onWebhookChanged?.(name);
    },
  });
  let started = false;

  return {
    sink,
    heartbeats: {
      servicesChanging: (trx, hosts) => appendServiceChanges(trx, sink, hosts),
      committed: (hostIds, nowMs) => transitions.seen(hostIds, nowMs),
    },
    webhooks,
    head,
    readDb,
    keepAliveMs: o.options?.keepAliveMs,
    tryOpenStream() {
      if (streams >= MAX_EVENT_STREAMS) return undefined;
      streams++;
      let open = true;
      return () => {
        if (open) streams--;
        open = false;
      };
    },
    hostRevoked: (hostId) => transitions.revoked(hostId),
    webhooksChanged: () => dispatcher.reload(),
    async start() {
      if (started) return;
      started = true;
      await transitions.start();
      pruner = startFleetPruner({
        db,
        clock,
        retention,
        log,
        onPruned: (events) => (pruned += events),
        ...(o.options?.leader && { leader: o.options.leader }),
      });
      dispatcher.start();
    },
    takeOver: () => transitions.takeOver(),
    settle: () => transitions.settle(),
    metricsLines: () => [
      '# HELP corral_fleet_events_pruned_total Fleet events deleted by retention (age or count).',
      '# TYPE corral_fleet_events_pruned_total counter',
      `corral_fleet_events_pruned_total ${pruned}`,
      '# HELP corral_fleet_event_streams Open follow streams of GET /v1/events.',
      '# TYPE corral_fleet_event_streams gauge',
      `corral_fleet_event_streams ${streams}`,
      ...dispatcher.metricsLines(),
    ],
    async close() {
      head.close();
      await transitions.close();
      await pruner?.close();
      await dispatcher.close();
    },
  };
}

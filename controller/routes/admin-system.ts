import type { Server as HttpServer } from 'node:http';
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type } from '@sinclair/typebox';
import type { Kysely } from 'kysely';
import type { ControllerDatabase } from '../db/schema.js';
import type { HeartbeatWriter } from '../fleet/heartbeat-writer.js';
import { countHostsByStatus, type Liveness } from '../fleet/host-store.js';
import type { ControllerMetrics } from '../http/metrics.js';
import { isoAt } from '../clock.js';
import { fleetMetricLines, hostGaugeLines } from '../http/fleet-metrics.js';
import { processMetricLines } from '../http/process-metrics.js';
import type { PinRegistry } from '../pins/pin-registry.js';

export interface SystemRouteOptions {
  /** Host counts are read here (the read-only connection). */
  readonly readDb: Kysely<ControllerDatabase>;
  live(): Liveness;
  readonly writer: Pick<HeartbeatWriter, 'stats'>;
  readonly pins: Pick<PinRegistry, 'size'>;
  readonly metrics: ControllerMetrics;
}

const Health = Type.Object({ ok: Type.Boolean() }, { additionalProperties: false });

const EXPOSITION_TYPE = 'text/plain; version=0.0.4; charset=utf-8';

/**
 * `/health` (no token), `/metrics` and `/metrics/hosts` (Prometheus text; a `metrics`-scoped
 * credential). `/metrics` holds the per-host gauges only up to PER_HOST_SERIES_MAX_HOSTS hosts;
 * `/metrics/hosts` holds them alone, for every active host.
 */
export const adminSystemRoutes: FastifyPluginAsyncTypebox<SystemRouteOptions, HttpServer> = async (
  app,
  o,
) => {
  app.get('/health', { schema: { response: { 200: Health } } }, async () => ({ ok: true }));

  app.get('/metrics', async (_request, reply) => {
    const live = o.live();
    const counts = await countHostsByStatus(o.readDb, live);
    const fleet = await fleetMetricLines(
      o.readDb,
      isoAt(live.nowMs),
      counts.online + counts.stale + counts.offline,
    );
    const stats = o.writer.stats();
    const extra = [
      '# HELP corral_heartbeat_queue Heartbeats waiting to be written.',
      '# TYPE corral_heartbeat_queue gauge',
      `corral_heartbeat_queue ${stats.pending}`,
      '# HELP corral_heartbeat_batches_total Heartbeat write transactions committed.',
      '# TYPE corral_heartbeat_batches_total counter',
      `corral_heartbeat_batches_total ${stats.batches}`,
      '# HELP corral_pins Active pinned certificates.',
      '# TYPE corral_pins gauge',
      `corral_pins ${o.pins.size}`,
      ...fleet,
      ...(await processMetricLines()),
    ];
    return reply.type(EXPOSITION_TYPE).send(o.metrics.render(counts, extra));
  });

  app.get('/metrics/hosts', async (_request, reply) => {
    const lines = await hostGaugeLines(o.readDb);
    return reply.type(EXPOSITION_TYPE).send(`${lines.join('\n')}\n`);
  });
};

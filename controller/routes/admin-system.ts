import type { Server as HttpServer } from 'node:http';
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type } from '@sinclair/typebox';
import { countHostsByStatus } from '../fleet/host-store.js';
import type { AdminContext } from '../http/admin-context.js';

const Health = Type.Object({ ok: Type.Boolean() }, { additionalProperties: false });

/** `/health` (no token) and `/metrics` (Prometheus text; token required). */
export const adminSystemRoutes: FastifyPluginAsyncTypebox<{ ctx: AdminContext }, HttpServer> = async (
  app,
  { ctx },
) => {
  app.get('/health', { schema: { response: { 200: Health } } }, async () => ({ ok: true }));

  app.get('/metrics', async (_request, reply) => {
    const counts = await countHostsByStatus(ctx.readDb, ctx.live());
    const stats = ctx.writer.stats();
    const extra = [
      '# HELP corral_heartbeat_queue Heartbeats waiting to be written.',
      '# TYPE corral_heartbeat_queue gauge',
      `corral_heartbeat_queue ${stats.pending}`,
      '# HELP corral_heartbeat_batches_total Heartbeat write transactions committed.',
      '# TYPE corral_heartbeat_batches_total counter',
      `corral_heartbeat_batches_total ${stats.batches}`,
      '# HELP corral_pins Active pinned certificates.',
      '# TYPE corral_pins gauge',
      `corral_pins ${ctx.pins.size}`,
    ];
    return reply.type('text/plain; version=0.0.4; charset=utf-8').send(ctx.metrics.render(counts, extra));
  });
};

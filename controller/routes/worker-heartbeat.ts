import type { Server as HttpsServer } from 'node:https';
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { HeartbeatRequest, HeartbeatResponse } from '../../protocol/heartbeat.js';
import { isoAt, type Clock } from '../clock.js';
import type { ClockOffsets } from '../fleet/clock-offsets.js';
import type { HeartbeatWriter } from '../fleet/heartbeat-writer.js';
import type { ControllerMetrics, HeartbeatRejectReason } from '../http/metrics.js';
import { refusalReason, workerPeer, workerRefused } from '../http/worker-auth.js';
import type { PinKeeper } from '../pins/pin-keeper.js';

export interface HeartbeatRouteOptions {
  readonly writer: HeartbeatWriter;
  readonly keeper: PinKeeper;
  readonly metrics: ControllerMetrics;
  readonly clock: Clock;
  readonly intervalMs: number;
  readonly clocks?: ClockOffsets;
}

function reasonFor(statusCode: number): HeartbeatRejectReason {
  if (statusCode === 400) return 'validation';
  if (statusCode === 413) return 'too-large';
  if (statusCode === 503) return 'overloaded';
  return 'other';
}

/**
 * `POST /v1/heartbeat`: the agent's status, metrics and lifecycle events. The certificate on
 * this connection must be the agent pinned for the claimed host id. Events are acknowledged
 * only once they are committed.
 */
export const heartbeatRoute: FastifyPluginAsyncTypebox<HeartbeatRouteOptions, HttpsServer> = async (
  app,
  opts,
) => {
  // The ISO text of the current millisecond, made once per millisecond rather than per request.
  let serverTime = { ms: -1, iso: '' };
  app.post(
    '/v1/heartbeat',
    {
      schema: { body: HeartbeatRequest, response: { 200: HeartbeatResponse } },
      onResponse: (request, reply, done) => {
        if (reply.statusCode === 200) opts.metrics.heartbeatAccepted();
        else opts.metrics.heartbeatRejected(refusalReason(request) ?? reasonFor(reply.statusCode));
        done();
      },
    },
    async (request) => {
      const nowMs = opts.clock.now();
      if (nowMs !== serverTime.ms) serverTime = { ms: nowMs, iso: isoAt(nowMs) };
      const peer = workerPeer(request);
      if (request.body.hostId !== peer.hostId) throw workerRefused(request, 'host-mismatch');
      opts.keeper.seen(peer.fingerprint);
      opts.clocks?.record(peer, request.body.clock, nowMs);
      const ackedEventIds = await opts.writer.submit(peer.hostId, request.body);
      return { ackedEventIds, intervalMs: opts.intervalMs, serverTime: serverTime.iso };
    },
  );
};

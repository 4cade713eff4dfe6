import type { Server as HttpsServer } from 'node:https';
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { HEADER_CONTROLLER_LIST, MAX_WORKER_BODY_BYTES } from '../../protocol/constants.js';
import type { ControllerList } from '../../protocol/controller-list.js';
import { CorralError, ErrorCode } from '../../protocol/errors.js';
import { HeartbeatRequest, HeartbeatResponse } from '../../protocol/heartbeat.js';
import { isoAt, type Clock } from '../clock.js';
import type { ClockOffsets } from '../fleet/clock-offsets.js';
import type { HeartbeatBudget } from '../fleet/heartbeat-budget.js';
import type { HeartbeatWriter } from '../fleet/heartbeat-writer.js';
import type { ControllerMetrics, HeartbeatRejectReason } from '../http/metrics.js';
import { refusalReason, workerPeer, workerRefused } from '../http/worker-auth.js';
import type { PinKeeper } from '../pins/pin-keeper.js';

export interface HeartbeatRouteOptions {
  readonly writer: HeartbeatWriter;
  readonly budget: HeartbeatBudget;
  readonly keeper: PinKeeper;
  readonly metrics: ControllerMetrics;
  readonly clock: Clock;
  readonly intervalMs: number;
  readonly clocks?: ClockOffsets;
  /** The live controllers' addresses, for agents that ask (HEADER_CONTROLLER_LIST). */
  readonly controllers?: () => Promise<ControllerList | undefined>;
}

function reasonFor(statusCode: number): HeartbeatRejectReason {
  if (statusCode === 400) return 'validation';
  if (statusCode === 413) return 'too-large';
  if (statusCode === 503) return 'overloaded';
  if (statusCode === 429) return 'rate-limited';
  return 'other';
}

/** Request bytes charged to the budget: the declared length, or the most a body may be. */
function declaredBytes(header: string | undefined): number {
  const n = header === undefined ? Number.NaN : Number(header);
  return Number.isSafeInteger(n) && n >= 0 ? n : MAX_WORKER_BODY_BYTES;
}

/**
 * `POST /v1/heartbeat`: the agent's status, metrics and lifecycle events. The certificate on
 * this connection must be the agent pinned for the claimed host id. Events are acknowledged
 * only once they are committed. Each host has a budget of heartbeats and bytes, charged before
 * the body is read: over it, the answer is 429 CORRAL_ERR_RATE_LIMITED with `Retry-After`
 * (whole seconds until the same heartbeat would fit), and nothing is parsed or stored.
 * An agent that sends HEADER_CONTROLLER_LIST `1` gets every live controller's addresses too.
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
      onRequest: (request, reply, done) => {
        const peer = workerPeer(request);
        const bytes = declaredBytes(request.headers['content-length']);
        const decision = opts.budget.take(peer.hostId, bytes);
        if (decision.ok) return done();
        opts.metrics.heartbeatThrottled(bytes);
        const seconds = Math.max(1, Math.ceil(decision.retryAfterMs / 1000));
        void reply.header('retry-after', String(seconds));
        done(
          new CorralError(
            ErrorCode.RATE_LIMITED,
            `heartbeat budget of this host used up; retry in ${seconds} s`,
          ),
        );
      },
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
      const controllers =
        request.headers[HEADER_CONTROLLER_LIST] === '1' ? await opts.controllers?.() : undefined;
      return {
        ackedEventIds,
        intervalMs: opts.intervalMs,
        serverTime: serverTime.iso,
        ...(controllers !== undefined && { controllers }),
      };
    },
  );
};

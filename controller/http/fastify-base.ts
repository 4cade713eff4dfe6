import type { ServerOptions as HttpsOptions } from 'node:https';
import type { Logger } from 'pino';
import { createPlainApp, createTlsApp, type PlainApp, type TlsApp } from '../../kit/fastify/create-app.js';
import type { ControllerMetrics } from './metrics.js';

export type HttpsApp = TlsApp;
export type HttpApp = PlainApp;

/** Requests must arrive whole within this, in ms (slow clients are cut off). */
export const REQUEST_TIMEOUT_MS = 30_000;
/** Idle keep-alive connections of the admin and join listeners are kept this long, in ms. */
export const KEEP_ALIVE_TIMEOUT_MS = 75_000;
/**
 * Idle connections on the worker listener are closed after this, in ms: far shorter than a
 * heartbeat interval, so a fleet holds about (heartbeats/s × this) connections instead of
 * one per worker, and the next heartbeat reconnects with a resumed TLS session (README,
 * "Connections at fleet scale"). Long enough that an agent's requests in one burst share a
 * connection.
 */
export const WORKER_KEEP_ALIVE_TIMEOUT_MS = 5_000;
/**
 * Connections the kernel queues for the worker and syslog listeners before they are accepted
 * (capped by net.core.somaxconn). After a restart a whole fleet reconnects at once; Node's
 * default of 511 overflows, and a dropped connection retries only after 1, 3, 7, 15 … s.
 */
export const FLEET_LISTEN_BACKLOG = 4096;

interface BaseOptions {
  readonly log: Logger;
  readonly listener: string;
  readonly bodyLimit: number;
  readonly metrics: ControllerMetrics;
  /** Coerce query strings to their schema types (admin API); never for worker bodies. */
  readonly coerceTypes: boolean;
  /**
   * Log through the listener's logger instead of a child per request (saves an allocation
   * per heartbeat on the hot worker API; request logs lose their request id).
   */
  readonly sharedRequestLogger?: boolean;
  /** Idle keep-alive connections are closed after this, in ms (default KEEP_ALIVE_TIMEOUT_MS). */
  readonly keepAliveTimeoutMs?: number;
}

function appOptions(options: BaseOptions) {
  return {
    log: options.log,
    bodyLimit: options.bodyLimit,
    requestTimeoutMs: REQUEST_TIMEOUT_MS,
    keepAliveTimeoutMs: options.keepAliveTimeoutMs ?? KEEP_ALIVE_TIMEOUT_MS,
    ajv: { coerceTypes: options.coerceTypes },
    ...(options.sharedRequestLogger ? { sharedRequestLogger: true } : {}),
  };
}

/** An onResponse hook that counts each answer by listener, route and status. */
function observer(options: BaseOptions) {
  return (
    request: { readonly routeOptions: { readonly url?: string | undefined } },
    reply: { readonly statusCode: number; readonly elapsedTime: number },
    done: () => void,
  ): void => {
    options.metrics.observeRequest(
      options.listener,
      request.routeOptions.url ?? 'unmatched',
      reply.statusCode,
      reply.elapsedTime / 1000,
    );
    done();
  };
}

/** A fastify app over plain HTTP (the admin API, loopback by default). */
export function createHttpApp(options: BaseOptions): HttpApp {
  const app = createPlainApp(appOptions(options));
  app.addHook('onResponse', observer(options));
  return app;
}

/** A fastify app over TLS (the worker and join APIs). */
export function createHttpsApp(options: BaseOptions & { readonly https: HttpsOptions }): HttpsApp {
  const app = createTlsApp({ ...appOptions(options), https: options.https });
  app.addHook('onResponse', observer(options));
  return app;
}

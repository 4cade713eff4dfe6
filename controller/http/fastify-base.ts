import type { Server as HttpServer } from 'node:http';
import type { Server as HttpsServer, ServerOptions as HttpsOptions } from 'node:https';
import Fastify, { LogController, type FastifyInstance } from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import type { Logger } from 'pino';
import { installErrorEnvelope } from '../../protocol/fastify-errors.js';
import type { ControllerMetrics } from './metrics.js';

export type HttpsApp = FastifyInstance<HttpsServer, never, never, Logger, TypeBoxTypeProvider>;
export type HttpApp = FastifyInstance<HttpServer, never, never, Logger, TypeBoxTypeProvider>;

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

function common(options: BaseOptions) {
  return {
    loggerInstance: options.log,
    logController: new LogController({ disableRequestLogging: true }),
    ...(options.sharedRequestLogger ? { childLoggerFactory: <L>(logger: L): L => logger } : {}),
    bodyLimit: options.bodyLimit,
    requestTimeout: REQUEST_TIMEOUT_MS,
    keepAliveTimeout: options.keepAliveTimeoutMs ?? KEEP_ALIVE_TIMEOUT_MS,
    return503OnClosing: true,
    forceCloseConnections: 'idle' as const,
    ajv: {
      customOptions: {
        removeAdditional: false as const,
        useDefaults: false,
        coerceTypes: options.coerceTypes,
        allErrors: false,
      },
    },
  };
}

function finish<
  T extends FastifyInstance<HttpServer | HttpsServer, never, never, Logger, TypeBoxTypeProvider>,
>(app: T, options: BaseOptions): T {
  installErrorEnvelope(app as unknown as FastifyInstance);
  app.addHook('onResponse', (request, reply, done) => {
    options.metrics.observeRequest(
      options.listener,
      request.routeOptions.url ?? 'unmatched',
      reply.statusCode,
      reply.elapsedTime / 1000,
    );
    done();
  });
  return app;
}

/** A fastify app over plain HTTP (the admin API, loopback by default). */
export function createHttpApp(options: BaseOptions): HttpApp {
  const app = Fastify(common(options)).withTypeProvider<TypeBoxTypeProvider>() as unknown as HttpApp;
  return finish(app, options);
}

/** A fastify app over TLS (the worker and join APIs). */
export function createHttpsApp(options: BaseOptions & { readonly https: HttpsOptions }): HttpsApp {
  const app = Fastify({
    ...common(options),
    https: options.https,
  }).withTypeProvider<TypeBoxTypeProvider>() as unknown as HttpsApp;
  return finish(app, options);
}

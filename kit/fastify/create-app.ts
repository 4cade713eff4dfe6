import type { IncomingMessage, Server as HttpServer, ServerResponse } from 'node:http';
import type { Server as HttpsServer, ServerOptions as HttpsOptions } from 'node:https';
import Fastify, { LogController, type FastifyInstance } from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import type { Logger } from 'pino';
import { installErrorEnvelope } from './error-envelope.js';

/** A fastify app over TLS with TypeBox schemas as the types of its routes. */
export type TlsApp = FastifyInstance<
  HttpsServer,
  IncomingMessage,
  ServerResponse,
  Logger,
  TypeBoxTypeProvider
>;
/** The same over plain HTTP (the controller's admin API, loopback by default). */
export type PlainApp = FastifyInstance<
  HttpServer,
  IncomingMessage,
  ServerResponse,
  Logger,
  TypeBoxTypeProvider
>;

export interface AppOptions {
  readonly log: Logger;
  readonly bodyLimit: number;
  /** Requests must arrive whole within this, in ms; unset: no limit (fastify's default). */
  readonly requestTimeoutMs?: number;
  /** Idle keep-alive connections are kept this long, in ms; unset: fastify's default (72 s). */
  readonly keepAliveTimeoutMs?: number;
  /**
   * How schemas treat input. The default is strict: no coercion, and extra properties are
   * refused, never silently dropped (dropping them would also corrupt union matching).
   */
  readonly ajv?: { readonly coerceTypes?: boolean | 'array'; readonly removeAdditional?: boolean };
  /**
   * Log through `log` itself instead of a child per request (saves an allocation per call on
   * a hot API; request logs lose their request id).
   */
  readonly sharedRequestLogger?: boolean;
}

function fastifyOptions(o: AppOptions) {
  return {
    loggerInstance: o.log,
    // One line per request is too many: refusals and failures are logged by the error handler.
    logController: new LogController({ disableRequestLogging: true }),
    ...(o.sharedRequestLogger ? { childLoggerFactory: <L>(logger: L): L => logger } : {}),
    bodyLimit: o.bodyLimit,
    ...(o.requestTimeoutMs !== undefined ? { requestTimeout: o.requestTimeoutMs } : {}),
    ...(o.keepAliveTimeoutMs !== undefined ? { keepAliveTimeout: o.keepAliveTimeoutMs } : {}),
    return503OnClosing: true,
    forceCloseConnections: 'idle' as const,
    ajv: {
      customOptions: {
        removeAdditional: o.ajv?.removeAdditional ?? false,
        useDefaults: false,
        coerceTypes: o.ajv?.coerceTypes ?? false,
        allErrors: false,
      },
    },
  };
}

/**
 * The one way a Corral daemon builds a TLS API: fastify over `https`, every error answered
 * with the one envelope (kit/fastify/error-envelope.ts), no per-request log lines.
 */
export function createTlsApp(o: AppOptions & { readonly https: HttpsOptions }): TlsApp {
  const app = Fastify<HttpsServer, IncomingMessage, ServerResponse, Logger>({
    ...fastifyOptions(o),
    https: o.https,
  }).withTypeProvider<TypeBoxTypeProvider>();
  installErrorEnvelope(app);
  return app;
}

/** createTlsApp over plain HTTP, for an API that only listens on loopback. */
export function createPlainApp(o: AppOptions): PlainApp {
  const app = Fastify<HttpServer, IncomingMessage, ServerResponse, Logger>(
    fastifyOptions(o),
  ).withTypeProvider<TypeBoxTypeProvider>();
  installErrorEnvelope(app);
  return app;
}

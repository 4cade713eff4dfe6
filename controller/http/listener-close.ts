import { setTimeout as sleep } from 'node:timers/promises';
import type {
  FastifyBaseLogger,
  FastifyInstance,
  FastifyTypeProvider,
  RawReplyDefaultExpression,
  RawRequestDefaultExpression,
  RawServerBase,
} from 'fastify';

/** How often a closing listener is looked at until its server stops listening, in ms. */
const LISTENING_POLL_MS = 5;

/**
 * A fastify app's close in the controller's two shutdown steps. fastify's `close()` stops the
 * server from accepting (new requests on open connections are answered 503, idle ones are
 * closed) and then waits for the requests in flight; the controller aborts its operations in
 * between, so a request waiting on one (an update push) can end.
 */
export interface ListenerClose {
  /** The close has begun. */
  readonly closing: boolean;
  /** Starts the close; resolves once the server accepts no new connection. Idempotent. */
  stopAccepting(): Promise<void>;
  /**
   * Starts the close if it has not started; resolves once every request in flight was
   * answered and its connection closed.
   */
  drained(): Promise<void>;
}

/**
 * Call while building `app` (it adds a hook): once the close has begun, every answer carries
 * `Connection: close`, so a keep-alive connection ends with the request it was serving instead
 * of holding the close until its idle timeout.
 */
export function listenerClose<
  S extends RawServerBase,
  L extends FastifyBaseLogger,
  P extends FastifyTypeProvider,
>(
  app: FastifyInstance<S, RawRequestDefaultExpression<S>, RawReplyDefaultExpression<S>, L, P>,
): ListenerClose {
  let closing: Promise<void> | undefined;
  app.addHook('onSend', (_request, reply, payload, done) => {
    if (closing) reply.header('connection', 'close');
    done(null, payload);
  });
  const begin = (): Promise<void> => (closing ??= app.close());
  return {
    get closing() {
      return closing !== undefined;
    },
    async stopAccepting() {
      const closed = begin().then(
        () => true,
        () => true /* drained() reports the failure */,
      );
      // fastify calls server.close() a few ticks into close(), after its preClose hooks.
      while (app.server.listening) {
        if (await Promise.race([closed, sleep(LISTENING_POLL_MS, false)])) return;
      }
    },
    drained: begin,
  };
}

import { setMaxListeners } from 'node:events';
import type { Server as HttpServer } from 'node:http';
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import {
  DEFAULT_EVENTS_PAGE,
  EventsPage,
  EventsQuery,
  MAX_EVENT_CURSOR,
  SSE_CONTENT_TYPE,
} from '../../protocol/fleet-events.js';
import { CorralError, ErrorCode } from '../../protocol/errors.js';
import { headCursor, readPage } from '../events/event-log.js';
import { streamEvents } from '../events/event-stream.js';
import { MAX_EVENT_STREAMS, type FleetEvents } from '../events/fleet-events.js';

export interface AdminEventRoutesOptions {
  readonly events: FleetEvents;
}

const CURSOR_RE = /^\d{1,15}$/;

/** The cursor to start after: `Last-Event-ID` (a reconnecting SSE client) wins over `since`. */
function startCursor(lastEventId: string | string[] | undefined, since: number | undefined): number {
  if (lastEventId === undefined) return since ?? 0;
  const text = Array.isArray(lastEventId) ? lastEventId[0] : lastEventId;
  if (text === undefined || !CURSOR_RE.test(text.trim()) || Number(text) > MAX_EVENT_CURSOR) {
    throw new CorralError(ErrorCode.VALIDATION, 'headers/last-event-id must be an event cursor (digits)');
  }
  return Number(text);
}

const wantsStream = (accept: string | undefined): boolean =>
  accept !== undefined && accept.split(',').some((part) => part.split(';')[0]?.trim() === SSE_CONTENT_TYPE);

/**
 * `GET /v1/events?since=CURSOR&limit=N`: a page of fleet events, oldest first. With
 * `follow=true` or `Accept: text/event-stream` it is a server-sent event stream instead, from
 * `since` (or `Last-Event-ID`) on, until the client goes or the controller stops. A cursor
 * past the newest one this controller handed out is refused (it came from elsewhere).
 */
export const adminEventRoutes: FastifyPluginAsyncTypebox<AdminEventRoutesOptions, HttpServer> = async (
  app,
  { events },
) => {
  const stopping = new AbortController();
  // Each open stream listens on it (twice: its own signal, and its wait for the next event).
  setMaxListeners(MAX_EVENT_STREAMS * 2 + 8, stopping.signal);
  // Streams end before the server waits for its connections to close.
  app.addHook('preClose', (done) => {
    stopping.abort();
    done();
  });

  app.get(
    '/v1/events',
    { schema: { querystring: EventsQuery, response: { 200: EventsPage } } },
    async (request, reply) => {
      const since = startCursor(request.headers['last-event-id'], request.query.since);
      const head = await headCursor(events.readDb);
      if (since > head) {
        throw new CorralError(
          ErrorCode.VALIDATION,
          `cursor ${since} is past the newest event (${head}); it was not handed out by this controller`,
        );
      }
      if (request.query.follow !== true && !wantsStream(request.headers.accept)) {
        return readPage(events.readDb, since, request.query.limit ?? DEFAULT_EVENTS_PAGE);
      }
      const release = events.tryOpenStream();
      if (!release)
        throw new CorralError(ErrorCode.UNAVAILABLE, 'too many event streams are open; retry later');
      const gone = new AbortController();
      reply.raw.once('close', () => gone.abort());
      void reply.hijack();
      try {
        await streamEvents({
          raw: reply.raw,
          readDb: events.readDb,
          head: events.head,
          since,
          signal: AbortSignal.any([gone.signal, stopping.signal]),
          ...(events.keepAliveMs !== undefined && { keepAliveMs: events.keepAliveMs }),
        });
      } catch (err: unknown) {
        request.log.error({ err }, 'event stream broke off');
        reply.raw.destroy();
      } finally {
        release();
      }
      return reply;
    },
  );
};

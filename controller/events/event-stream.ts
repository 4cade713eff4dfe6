import { once } from 'node:events';
import type { ServerResponse } from 'node:http';
import type { Kysely } from 'kysely';
import { SSE_CONTENT_TYPE, SSE_TRUNCATED_EVENT, type FleetEvent } from '../../protocol/fleet-events.js';
import type { ControllerDatabase } from '../db/schema.js';
import { headCursor, isTruncated, readEvents } from './event-log.js';
import type { HeadWatcher } from './head-watcher.js';

/** Events read per step of a stream. */
const STREAM_PAGE = 500;
/** A comment goes out when nothing else did for this long, in ms (proxies cut idle streams). */
export const KEEP_ALIVE_MS = 15_000;
/** What a client should wait before reconnecting, in ms (the SSE `retry:` field). */
const RECONNECT_MS = 1_000;

/** One event in SSE framing: its cursor as the id, its kind as the event name, one JSON line. */
export function sseFrame(e: FleetEvent): string {
  return `id: ${e.cursor}\nevent: ${e.kind}\ndata: ${JSON.stringify(e)}\n\n`;
}

async function write(raw: ServerResponse, chunk: string, signal: AbortSignal): Promise<void> {
  if (raw.write(chunk)) return;
  // A slow reader: wait for it, so what is buffered stays one write's worth.
  await once(raw, 'drain', { signal });
}

/**
 * Streams events after `since` to a hijacked response until `signal` aborts or the client
 * goes: what is stored first, then each event as it is committed, in cursor order, each
 * exactly once on this connection. A client that reconnects with the last id it received
 * (`Last-Event-ID`) therefore gets every later event once, whatever happened in between,
 * unless retention deleted some first: then one `truncated` event (no id) says where the gap
 * is. Resolves when the stream ends; never rejects for a client that went away.
 */
export async function streamEvents(o: {
  readonly raw: ServerResponse;
  readonly readDb: Kysely<ControllerDatabase>;
  readonly head: HeadWatcher;
  readonly since: number;
  readonly signal: AbortSignal;
  readonly keepAliveMs?: number;
}): Promise<void> {
  const { raw, signal } = o;
  const keepAliveMs = o.keepAliveMs ?? KEEP_ALIVE_MS;
  raw.writeHead(200, {
    'content-type': `${SSE_CONTENT_TYPE}; charset=utf-8`,
    'cache-control': 'no-store',
    'x-accel-buffering': 'no',
    connection: 'keep-alive',
  });
  raw.flushHeaders();
  let cursor = o.since;
  try {
    await write(raw, `retry: ${RECONNECT_MS}\n\n`, signal);
    while (!signal.aborted) {
      const head = await headCursor(o.readDb);
      const events = await readEvents(o.readDb, cursor, STREAM_PAGE);
      if (await isTruncated(o.readDb, cursor, events[0]?.cursor, head)) {
        const next = events[0]?.cursor ?? head + 1;
        await write(
          raw,
          `event: ${SSE_TRUNCATED_EVENT}\ndata: ${JSON.stringify({ after: cursor, next })}\n\n`,
          signal,
        );
        if (events.length === 0) cursor = head;
      }
      for (const e of events) {
        await write(raw, sseFrame(e), signal);
        cursor = e.cursor;
      }
      if (events.length === STREAM_PAGE) continue;
      const past = await o.head.waitPast(cursor, keepAliveMs, signal);
      if (!past && !signal.aborted) await write(raw, ': keep-alive\n\n', signal);
    }
  } catch (e: unknown) {
    // The client went (a write after close, an aborted drain wait) or the controller is
    // closing: the stream ends either way; anything else is the database's and is rethrown.
    if (!signal.aborted && !raw.destroyed) throw e;
  } finally {
    raw.end();
  }
}

import { api } from './api.js';

/**
 * The fleet event kinds the API's stream names its events by (protocol/fleet-events.ts; a test
 * checks the two lists agree). The page cannot import that module: it carries the schemas.
 */
export const LIVE_EVENT_KINDS = [
  'host.enrolled',
  'host.online',
  'host.stale',
  'host.offline',
  'host.decommissioned',
  'service.state_changed',
  'operation.started',
  'operation.finished',
  'release.updated',
  'release.rolled_back',
  'approval.pending',
  'approval.decided',
] as const;

/** Wait after the first event of a burst before reloading, in ms: a burst costs one reload. */
const BURST_MS = 250;
/** Wait before asking for the stream's starting point again when the ask failed, in ms. */
const START_RETRY_MS = 5_000;

/**
 * Calls `reload` once per burst of fleet events from `GET /v1/events?follow=true`, from the
 * newest event at the time it is called (the browser's EventSource reconnects on its own,
 * resuming by the last event id), until `signal`.
 * Reloads never overlap: events that come during one make one more, a burst after it ends.
 * `minGapMs`: at least this long from one reload's start to the next's (a page whose reload
 * reads the whole fleet sets it, so a fleet that changes all the time costs it one a second).
 * `everyMs`: also reload this often without an event (under the same rules): what changes
 * without an event, such as a host's last heartbeat, is then at most that old.
 */
export function onFleetChange(
  reload: () => Promise<void>,
  signal: AbortSignal,
  o: { readonly minGapMs?: number; readonly everyMs?: number } = {},
): void {
  let events: EventSource | undefined;
  let timer: ReturnType<typeof setTimeout> | undefined;
  let running = false;
  let again = false;
  let started = -Infinity;
  const run = (): void => {
    timer = undefined;
    running = true;
    started = performance.now();
    void reload()
      .catch(() => undefined /* what is shown stays until the next event */)
      .finally(() => {
        running = false;
        if (again && !signal.aborted) {
          again = false;
          soon();
        }
      });
  };
  const soon = (): void => {
    if (running) again = true;
    else timer ??= setTimeout(run, Math.max(BURST_MS, started + (o.minGapMs ?? 0) - performance.now()));
  };
  // The stream starts at the newest event: what came before is in what the page loads, and
  // a stream from the oldest kept event would replay up to the whole retained history (tens
  // of thousands of events on a large fleet) into reloads at every page opened.
  let retry: ReturnType<typeof setTimeout> | undefined;
  const start = (): void => {
    retry = undefined;
    api<{ head: number }>('GET', '/v1/events?limit=1').then(
      ({ head }) => {
        if (signal.aborted) return;
        events = new EventSource(`/v1/events?follow=true&since=${head}`);
        for (const kind of LIVE_EVENT_KINDS) events.addEventListener(kind, soon);
      },
      () => {
        if (!signal.aborted) retry = setTimeout(start, START_RETRY_MS);
      },
    );
  };
  start();
  const every = o.everyMs === undefined ? undefined : setInterval(soon, o.everyMs);
  signal.addEventListener('abort', () => {
    events?.close();
    if (timer) clearTimeout(timer);
    if (retry) clearTimeout(retry);
    clearInterval(every);
  });
}

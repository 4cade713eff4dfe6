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

/**
 * Calls `reload` once per burst of fleet events from `GET /v1/events?follow=true` (the
 * browser's EventSource reconnects on its own, resuming by the last event id), until `signal`.
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
  const events = new EventSource('/v1/events?follow=true');
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
  for (const kind of LIVE_EVENT_KINDS) events.addEventListener(kind, soon);
  const every = o.everyMs === undefined ? undefined : setInterval(soon, o.everyMs);
  signal.addEventListener('abort', () => {
    events.close();
    if (timer) clearTimeout(timer);
    clearInterval(every);
  });
}

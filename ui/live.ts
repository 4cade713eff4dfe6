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
 */
export function onFleetChange(reload: () => Promise<void>, signal: AbortSignal): void {
  const events = new EventSource('/v1/events?follow=true');
  let timer: ReturnType<typeof setTimeout> | undefined;
  const soon = (): void => {
    timer ??= setTimeout(() => {
      timer = undefined;
      void reload().catch(() => undefined /* what is shown stays until the next event */);
    }, BURST_MS);
  };
  for (const kind of LIVE_EVENT_KINDS) events.addEventListener(kind, soon);
  signal.addEventListener('abort', () => {
    events.close();
    if (timer) clearTimeout(timer);
  });
}

import { setTimeout as sleep } from 'node:timers/promises';
import type { ServiceView } from '../../protocol/deployment.js';
import type { HostView } from '../../protocol/host.js';
import { renderTable } from '../output.js';

/** What the live view shows: the controller's hosts and services at one moment. */
export interface FleetSnapshot {
  readonly at: Date;
  readonly hosts: readonly HostView[];
  readonly services: readonly ServiceView[];
  /** Why the services could not be read (the hosts are still shown). */
  readonly servicesError?: string;
}

function ago(iso: string | null, now: Date): string | null {
  if (iso === null) return null;
  const seconds = Math.max(0, Math.round((now.getTime() - Date.parse(iso)) / 1000));
  return `${seconds}s ago`;
}

/** The two tables (hosts, then services), as text. */
export function renderSnapshot(s: FleetSnapshot): string {
  const perHost = new Map<string, number>();
  for (const v of s.services) perHost.set(v.host, (perHost.get(v.host) ?? 0) + 1);
  const hosts = renderTable(
    ['host', 'address', 'status', 'last seen', 'services', 'agent'],
    s.hosts.map((h) => [
      h.name,
      `${h.address}:${h.agentPort}`,
      h.status,
      ago(h.lastSeen, s.at),
      perHost.get(h.name) ?? 0,
      h.agentVersion,
    ]),
  );
  const services =
    s.servicesError !== undefined
      ? `(cannot read the services: ${s.servicesError})\n`
      : s.services.length === 0
        ? '(no services deployed)\n'
        : renderTable(
            ['service', 'host', 'state', 'desired', 'restarts', 'last error'],
            [...s.services]
              .sort((a, b) => a.host.localeCompare(b.host) || a.service.localeCompare(b.service))
              .map((v) => [v.service, v.host, v.observed, v.desired, v.restarts, v.lastError]),
          );
  return `${hosts}\n${services}`;
}

export interface LiveViewOptions {
  readonly snapshot: () => Promise<FleetSnapshot>;
  /** Writes text; the caller's Output makes it terminal-safe. */
  readonly write: (text: string) => void;
  /** Clears the screen before each redraw on a terminal (the Output's own control sequence). */
  readonly clear: () => void;
  /** Redraw in place (a terminal) rather than print a fresh snapshot each time. */
  readonly tty: boolean;
  readonly intervalMs: number;
  /** Lines printed above the tables on every redraw (TTY) or once (non-TTY). */
  readonly header: string;
  readonly signal: AbortSignal;
}

/**
 * Shows the fleet until `signal` aborts: on a terminal, the screen is cleared and redrawn every
 * `intervalMs`; otherwise a timestamped snapshot is printed each time. A failed fetch is shown
 * and retried at the next tick.
 */
export async function runLiveView(o: LiveViewOptions): Promise<void> {
  if (!o.tty) o.write(o.header);
  while (!o.signal.aborted) {
    let body: string;
    let at = new Date();
    try {
      const s = await o.snapshot();
      at = s.at;
      body = renderSnapshot(s);
    } catch (e: unknown) {
      body = `(cannot read the fleet: ${e instanceof Error ? e.message : String(e)})\n`;
    }
    if (o.signal.aborted) return;
    const stamp = at
      .toISOString()
      .replace('T', ' ')
      .replace(/\.\d+Z$/, 'Z');
    if (o.tty) {
      o.clear();
      o.write(`${o.header}\n${stamp}\n\n${body}`);
    } else o.write(`\n--- ${stamp} ---\n${body}`);
    try {
      await sleep(o.intervalMs, undefined, { signal: o.signal });
    } catch {
      return; // AbortError: stopping
    }
  }
}

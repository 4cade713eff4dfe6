import { api } from './api.js';
import { ago, el, replace } from './dom.js';
import { onFleetChange } from './live.js';
import { labelCells } from './widgets.js';

const HEADERS = ['State', 'Service', 'Host', 'Desired', 'Restarts', 'Last error', 'Updated'];

interface ServiceRow {
  readonly service: string;
  readonly host: string;
  readonly desired: string;
  readonly observed: string;
  readonly restarts: number;
  readonly lastError: string | null;
  readonly updatedAt: string | null;
  /** Why the controller gave up retrying it (it stays failed until it runs again). */
  readonly escalated?: string;
}
interface PendingRow {
  readonly service: string;
  readonly reason: string;
  readonly since: string;
}

/** Order: what needs a look first (pending, escalated, failed, degraded), then by name. */
const RANK: Readonly<Record<string, number>> = { pending: 0, escalated: 1, failed: 2, degraded: 3 };
const rank = (s: ServiceRow): number => (s.escalated !== undefined ? 1 : (RANK[s.observed] ?? 9));

/**
 * Every service across the fleet: state, host, desired against observed, restarts and the
 * last error (worker text, shown as text); instances waiting for a host on top.
 */
export function renderServices(root: HTMLElement, signal: AbortSignal): void {
  const summary = el('p', { id: 'services-summary', role: 'status' }, 'loading…');
  const body = el('tbody', {});
  replace(
    root,
    el('h2', {}, 'Services'),
    summary,
    el(
      'table',
      { id: 'services', class: 'cards' },
      el('thead', {}, el('tr', {}, ...HEADERS.map((h) => el('th', { scope: 'col' }, h)))),
      body,
    ),
  );
  const load = async (): Promise<void> => {
    const page = await api<{ services: ServiceRow[]; pending?: PendingRow[] }>('GET', '/v1/services');
    const now = Date.now();
    const rows = [...page.services].sort((a, b) => rank(a) - rank(b) || a.service.localeCompare(b.service));
    replace(
      body,
      ...(page.pending ?? []).map((p) =>
        el(
          'tr',
          { 'data-service': p.service, 'data-state': 'pending' },
          el('td', {}, 'pending'),
          el('td', {}, p.service),
          el('td', {}, '-'),
          el('td', {}, 'running'),
          el('td', {}, '-'),
          el('td', { class: 'error' }, p.reason),
          el('td', {}, ago(p.since, now)),
        ),
      ),
      ...rows.map((s) =>
        el(
          'tr',
          { 'data-service': s.service, 'data-state': s.observed },
          el('td', {}, s.escalated === undefined ? s.observed : `${s.observed} (escalated)`),
          el('td', {}, s.service),
          el('td', {}, s.host),
          el('td', {}, s.desired),
          el('td', {}, s.restarts),
          el('td', { class: 'error' }, s.escalated ?? s.lastError ?? ''),
          el('td', {}, ago(s.updatedAt, now)),
        ),
      ),
    );
    labelCells(Array.from(body.rows), HEADERS);
    replace(summary, `${rows.length} services, ${(page.pending ?? []).length} pending`);
  };
  onFleetChange(load, signal);
  void load().catch((e: unknown) =>
    replace(summary, e instanceof Error ? e.message : 'could not load the services'),
  );
}

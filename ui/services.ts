import { api } from './api.js';
import { ago, el, replace } from './dom.js';
import { onFleetChange } from './live.js';

interface ServiceRow {
  readonly service: string;
  readonly host: string;
  readonly desired: string;
  readonly observed: string;
  readonly restarts: number;
  readonly lastError: string | null;
  readonly updatedAt: string | null;
}
interface PendingRow {
  readonly service: string;
  readonly reason: string;
  readonly since: string;
}

/** Order: what needs a look first (pending, escalated, failed, degraded), then by name. */
const RANK: Readonly<Record<string, number>> = { pending: 0, escalated: 1, failed: 2, degraded: 3 };

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
      { id: 'services' },
      el(
        'thead',
        {},
        el(
          'tr',
          {},
          ...['State', 'Service', 'Host', 'Desired', 'Restarts', 'Last error', 'Updated'].map((h) =>
            el('th', { scope: 'col' }, h),
          ),
        ),
      ),
      body,
    ),
  );
  const load = async (): Promise<void> => {
    const page = await api<{ services: ServiceRow[]; pending?: PendingRow[] }>('GET', '/v1/services');
    const now = Date.now();
    const rows = [...page.services].sort(
      (a, b) => (RANK[a.observed] ?? 9) - (RANK[b.observed] ?? 9) || a.service.localeCompare(b.service),
    );
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
          el('td', {}, s.observed),
          el('td', {}, s.service),
          el('td', {}, s.host),
          el('td', {}, s.desired),
          el('td', {}, s.restarts),
          el('td', { class: 'error' }, s.lastError ?? ''),
          el('td', {}, ago(s.updatedAt, now)),
        ),
      ),
    );
    replace(summary, `${rows.length} services, ${(page.pending ?? []).length} pending`);
  };
  onFleetChange(load, signal);
  void load().catch((e: unknown) =>
    replace(summary, e instanceof Error ? e.message : 'could not load the services'),
  );
}

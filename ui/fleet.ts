import { api } from './api.js';
import { ago, el, replace } from './dom.js';
import { healthOf } from './health.js';
import { onFleetChange } from './live.js';

interface HostRow {
  readonly name: string;
  readonly address: string;
  readonly status: string;
  readonly labels: Readonly<Record<string, string>>;
  readonly lastSeen: string | null;
  readonly agentVersion: string | null;
  readonly metrics: { readonly diskTotalBytes: number; readonly diskFreeBytes: number } | null;
}
interface ServiceRow {
  readonly service: string;
  readonly host: string;
  readonly observed: string;
}

/** A performance mark set when the fleet page first shows its hosts. */
export const FLEET_DRAWN_MARK = 'corral:fleet-drawn';
/** A performance mark set when the fleet page has read its hosts and services. */
export const FLEET_LOADED_MARK = 'corral:fleet-loaded';

/**
 * Reads every page of hosts (1000 at a time), calling `onPage` with what it has so far after
 * each. An answer without `nextCursor` (a controller that does not page) is the last page.
 */
async function allHosts(onPage: (sofar: readonly HostRow[]) => Promise<void>): Promise<HostRow[]> {
  const hosts: HostRow[] = [];
  let cursor: string | null = null;
  do {
    const q: string = cursor === null ? '' : `&cursor=${encodeURIComponent(cursor)}`;
    const page: { hosts: HostRow[]; nextCursor?: string | null } = await api(
      'GET',
      `/v1/hosts?limit=1000${q}`,
    );
    hosts.push(...page.hosts);
    cursor = page.nextCursor ?? null;
    if (cursor !== null) await onPage(hosts);
  } while (cursor !== null);
  return hosts;
}

/**
 * The fleet page: one row per host with its health (dot and words), name, address, labels,
 * agent version, last seen and service counts; a name search and a health filter; kept live
 * from the fleet event stream (each burst of events reloads the lists once).
 */
export function renderFleet(root: HTMLElement, signal: AbortSignal): void {
  const search = el('input', { id: 'fleet-search', type: 'search', placeholder: 'name' });
  const filter = el(
    'select',
    { id: 'fleet-filter' },
    ...['all', 'green', 'yellow', 'red', 'grey'].map((v) =>
      el('option', { value: v }, v === 'all' ? 'every health' : v),
    ),
  );
  const summary = el('p', { id: 'fleet-summary', role: 'status' }, 'loading…');
  const body = el('tbody', {});
  replace(
    root,
    el('h2', {}, 'Fleet'),
    el(
      'div',
      { class: 'controls' },
      el('label', { for: 'fleet-search' }, 'Search'),
      search,
      el('label', { for: 'fleet-filter' }, 'Health'),
      filter,
    ),
    summary,
    el(
      'table',
      { id: 'fleet' },
      el(
        'thead',
        {},
        el(
          'tr',
          {},
          ...['Health', 'Name', 'Address', 'Labels', 'Agent', 'Last seen', 'Services'].map((h) =>
            el('th', { scope: 'col' }, h),
          ),
        ),
      ),
      body,
    ),
  );

  let hosts: HostRow[] = [];
  let services: ServiceRow[] = [];
  const draw = (): void => {
    const now = Date.now();
    const byHost = new Map<string, string[]>();
    for (const s of services) byHost.set(s.host, [...(byHost.get(s.host) ?? []), s.observed]);
    const wanted = search.value.trim().toLowerCase();
    const rows = hosts
      .map((h) => ({
        h,
        states: byHost.get(h.name) ?? [],
        ...healthOf({ ...h, services: byHost.get(h.name) ?? [] }),
      }))
      .filter(
        (r) =>
          (filter.value === 'all' || r.health === filter.value) && r.h.name.toLowerCase().includes(wanted),
      );
    replace(
      body,
      ...rows.map(({ h, states, health, reason }) => {
        const running = states.filter((s) => s === 'running').length;
        return el(
          'tr',
          { 'data-host': h.name, 'data-health': health },
          el(
            'td',
            {},
            el('span', { class: `dot ${health}`, 'aria-hidden': 'true' }),
            ' ',
            el('span', { class: 'health-text' }, reason),
          ),
          el('td', {}, el('a', { href: `#/host/${encodeURIComponent(h.name)}` }, h.name)),
          el('td', {}, h.address),
          el(
            'td',
            {},
            Object.entries(h.labels)
              .map(([k, v]) => `${k}=${v}`)
              .join(', '),
          ),
          el('td', {}, h.agentVersion ?? '-'),
          el('td', {}, ago(h.lastSeen, now)),
          el('td', {}, states.length === 0 ? '-' : `${running}/${states.length} running`),
        );
      }),
    );
    replace(summary, `${rows.length} of ${hosts.length} hosts`);
    // For the browser test's measurement: when the list was first drawn after loading.
    if (hosts.length > 0 && performance.getEntriesByName(FLEET_DRAWN_MARK).length === 0)
      performance.mark(FLEET_DRAWN_MARK);
  };
  const load = async (): Promise<void> => {
    const listed = api<{ services: ServiceRow[] }>('GET', '/v1/services');
    // The first load shows the first page as soon as it is here; a reload swaps the whole list.
    const first = hosts.length === 0;
    const h = await allHosts(async (sofar) => {
      if (!first) return;
      services = (await listed).services;
      hosts = [...sofar];
      draw();
    });
    hosts = h;
    services = (await listed).services;
    if (performance.getEntriesByName(FLEET_LOADED_MARK).length === 0) performance.mark(FLEET_LOADED_MARK);
    draw();
  };
  search.addEventListener('input', draw);
  filter.addEventListener('change', draw);

  onFleetChange(load, signal);
  const tick = setInterval(draw, 5_000);
  signal.addEventListener('abort', () => clearInterval(tick));
  void load().catch((e: unknown) =>
    replace(summary, e instanceof Error ? e.message : 'could not load the fleet'),
  );
}

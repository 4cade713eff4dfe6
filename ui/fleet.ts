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

/** Reloads of the whole fleet start at least this far apart, in ms ("last seen" is in seconds). */
const RELOAD_GAP_MS = 1_000;
/**
 * The fleet is read again this often without an event, in ms: a steady heartbeat sends no
 * event, so without it "last seen" would only grow until something else changed.
 */
const RELOAD_EVERY_MS = 10_000;

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

/** What a fleet row shows but its name and last seen (which changes with every heartbeat). */
interface FleetCells {
  readonly health: string;
  readonly reason: string;
  readonly address: string;
  readonly labels: string;
  readonly agent: string;
  readonly services: string;
}

interface DrawnRow {
  readonly tr: HTMLTableRowElement;
  /** The last-seen cell, whose text is kept current without making the row again. */
  readonly seen: HTMLTableCellElement;
  /** The cells it was made from, as text. */
  readonly key: string;
  /** The host's last heartbeat, as last read. */
  at: string | null;
}

function fleetRow(name: string, c: FleetCells): Pick<DrawnRow, 'tr' | 'seen'> {
  const seen = el('td', {});
  const tr = el(
    'tr',
    { 'data-host': name, 'data-health': c.health },
    el(
      'td',
      {},
      el('span', { class: `dot ${c.health}`, 'aria-hidden': 'true' }),
      ' ',
      el('span', { class: 'health-text' }, c.reason),
    ),
    el('td', {}, el('a', { href: `#/host/${encodeURIComponent(name)}` }, name)),
    el('td', {}, c.address),
    el('td', {}, c.labels),
    el('td', {}, c.agent),
    seen,
    el('td', {}, c.services),
  );
  return { tr, seen };
}

/**
 * The fleet page: one row per host with its health (dot and words), name, address, labels,
 * agent version, last seen and service counts; a name search and a health filter; kept live
 * from the fleet event stream (each burst of events reloads the lists once; a reload makes
 * again only the rows whose host changed, and draws at the next animation frame; reloads are
 * a second apart at most, and come every RELOAD_EVERY_MS without an event).
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
  /** The rows drawn, by host name: a row is made again only when what it shows changed. */
  const drawn = new Map<string, DrawnRow>();
  /**
   * Rows on screen (or near it): only their "last seen" is kept current at each draw, a row
   * coming into view gets it then. Setting it in every row lays out the whole table, which
   * at 1,000 rows is a long task per draw.
   */
  const rowOf = new WeakMap<Element, DrawnRow>();
  const onScreen = new Set<DrawnRow>();
  const showSeen = (r: DrawnRow, now: number): void => {
    const text = ago(r.at, now);
    if (r.seen.textContent !== text) r.seen.textContent = text;
  };
  const views = new IntersectionObserver(
    (entries) => {
      const now = Date.now();
      for (const e of entries) {
        const r = rowOf.get(e.target);
        if (!r) continue;
        if (e.isIntersecting) {
          onScreen.add(r);
          showSeen(r, now);
        } else onScreen.delete(r);
      }
    },
    { rootMargin: '300px 0px' },
  );
  const forget = (r: DrawnRow): void => {
    views.unobserve(r.tr);
    onScreen.delete(r);
  };
  const draw = (): void => {
    const now = Date.now();
    const byHost = new Map<string, string[]>();
    for (const s of services) {
      const states = byHost.get(s.host);
      if (states) states.push(s.observed);
      else byHost.set(s.host, [s.observed]);
    }
    const wanted = search.value.trim().toLowerCase();
    const shown: HTMLTableRowElement[] = [];
    const seen = new Set<string>();
    for (const h of hosts) {
      const states = byHost.get(h.name) ?? [];
      const { health, reason } = healthOf({ ...h, services: states });
      if (filter.value !== 'all' && health !== filter.value) continue;
      if (!h.name.toLowerCase().includes(wanted)) continue;
      const running = states.filter((st) => st === 'running').length;
      const cells: FleetCells = {
        health,
        reason,
        address: h.address,
        labels: Object.entries(h.labels)
          .map(([k, v]) => `${k}=${v}`)
          .join(', '),
        agent: h.agentVersion ?? '-',
        services: states.length === 0 ? '-' : `${running}/${states.length} running`,
      };
      const key = JSON.stringify(cells);
      let r = drawn.get(h.name);
      if (r?.key !== key) {
        const old = r;
        r = { ...fleetRow(h.name, cells), key, at: h.lastSeen };
        // A row on the page is swapped where it is, so the others stay as they are.
        if (old) {
          forget(old);
          if (old.tr.parentNode === body) old.tr.replaceWith(r.tr);
        }
        showSeen(r, now);
        drawn.set(h.name, r);
        rowOf.set(r.tr, r);
        views.observe(r.tr);
      }
      // A heartbeat moves "last seen" and nothing else: that text only, on screen only.
      r.at = h.lastSeen;
      if (onScreen.has(r)) showSeen(r, now);
      shown.push(r.tr);
      seen.add(h.name);
    }
    for (const [name, r] of drawn) {
      if (seen.has(name)) continue;
      forget(r);
      drawn.delete(name);
    }
    // The rows are put in again only when which rows show, or their order, changed.
    const current = body.children;
    const same = current.length === shown.length && shown.every((tr, i) => current[i] === tr);
    if (!same) body.replaceChildren(...shown);
    const text = `${shown.length} of ${hosts.length} hosts`;
    if (summary.textContent !== text) summary.textContent = text;
    // For the browser test's measurement: when the list was first drawn after loading.
    if (hosts.length > 0 && performance.getEntriesByName(FLEET_DRAWN_MARK).length === 0)
      performance.mark(FLEET_DRAWN_MARK);
  };
  /** Draws at the next frame, once however many changes came before it. */
  let frame = 0;
  const drawSoon = (): void => {
    frame ||= requestAnimationFrame(() => {
      frame = 0;
      draw();
    });
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
    if (performance.getEntriesByName(FLEET_LOADED_MARK).length === 0) {
      performance.mark(FLEET_LOADED_MARK);
      draw();
    } else drawSoon();
  };
  search.addEventListener('input', drawSoon);
  filter.addEventListener('change', drawSoon);

  onFleetChange(load, signal, { minGapMs: RELOAD_GAP_MS, everyMs: RELOAD_EVERY_MS });
  const tick = setInterval(drawSoon, 5_000);
  signal.addEventListener('abort', () => {
    clearInterval(tick);
    cancelAnimationFrame(frame);
    views.disconnect();
  });
  void load().catch((e: unknown) =>
    replace(summary, e instanceof Error ? e.message : 'could not load the fleet'),
  );
}

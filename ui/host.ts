import { api, isPendingApproval } from './api.js';
import { ago, el, replace, type Child } from './dom.js';
import { healthOf } from './health.js';
import { outcome, renderHostActions } from './host-actions.js';
import { hostServices } from './host-services.js';
import { onFleetChange } from './live.js';
import { renderLogTail } from './log-tail.js';
import { OPERATION_HEADERS, operationRows, type OperationDetail, type OperationView } from './operations.js';
import { can } from './session.js';
import { actionButton, bytes, mapLimit, row, statusLine, table, when, type StatusLine } from './widgets.js';

interface Metrics {
  readonly load1: number;
  readonly load5: number;
  readonly load15: number;
  readonly memTotalBytes: number;
  readonly memAvailableBytes: number;
  readonly diskTotalBytes: number;
  readonly diskFreeBytes: number;
  readonly uptimeSeconds: number;
}
export interface HostDetail {
  readonly host: {
    readonly name: string;
    readonly id: string;
    readonly address: string;
    readonly status: string;
    readonly labels: Readonly<Record<string, string>>;
    readonly lastSeen: string | null;
    readonly enrolledAt: string;
    readonly agentVersion: string | null;
    readonly generation: number;
    readonly metrics: Metrics | null;
    readonly eligibility?: string;
    readonly drainDeadline?: string | null;
    readonly clock?: { offsetMs: number; warning: boolean } | null;
  };
  readonly enrolledVia: string;
  readonly joinSource: string | null;
  readonly sans: readonly string[];
  readonly services: readonly {
    readonly name: string;
    readonly state: string;
    readonly restarts: number;
    readonly lastError: string | null;
    readonly pid: number | null;
    readonly since: string | null;
    readonly runtime?: string;
    readonly image?: string;
  }[];
  readonly pins: readonly {
    readonly role: string;
    readonly fingerprint: string;
    readonly notAfter: string;
    readonly createdAt: string;
    readonly superseded: boolean;
  }[];
  readonly recentEvents: readonly {
    readonly type: string;
    readonly time: string;
    readonly service: string | null;
    readonly detail: string | null;
  }[];
}
interface HostReleases {
  readonly current: string | null;
  readonly previous: string | null;
  readonly updater: string | null;
  readonly busy: boolean;
  readonly error: string | null;
  readonly history: readonly {
    readonly time: string;
    readonly version: string;
    readonly from: string | null;
    readonly outcome: string;
    readonly reason: string;
  }[];
}

export const HOST_TABS = ['overview', 'services', 'releases', 'operations', 'logs', 'actions'] as const;
export type HostTab = (typeof HOST_TABS)[number];
/** Operations the operations tab looks through for this host's steps (the newest). */
const OPERATIONS_SEARCHED = 100;

/** Whether the operator may take any action the actions tab offers. */
export const mayActOnHosts = (): boolean => can('deploy') || can('decommission');

function facts(id: string, pairs: readonly (readonly [string, Child])[]): HTMLElement {
  return el('dl', { class: 'facts', id }, ...pairs.flatMap(([k, v]) => [el('dt', {}, k), el('dd', {}, v)]));
}

function overview(d: HostDetail): Node[] {
  const h = d.host;
  const m = h.metrics;
  const states = d.services.map((s) => s.state);
  const { health, reason } = healthOf({ status: h.status, metrics: m, services: states });
  const labels = Object.entries(h.labels).map(([k, v]) => `${k}=${v}`);
  return [
    facts('host-facts', [
      ['Health', el('span', {}, el('span', { class: `dot ${health}`, 'aria-hidden': 'true' }), ' ', reason)],
      ['Status', h.status],
      ['Address', h.address],
      ['Eligibility', h.eligibility ?? 'eligible'],
      ...(h.drainDeadline ? [['Drain deadline', when(h.drainDeadline)] as const] : []),
      ['Labels', labels.length === 0 ? 'none' : labels.join(', ')],
      ['Agent', h.agentVersion ?? '-'],
      ['Generation', h.generation],
      ['Last seen', ago(h.lastSeen, Date.now())],
      ['Enrolled', `${when(h.enrolledAt)} (${d.enrolledVia}${d.joinSource ? ` from ${d.joinSource}` : ''})`],
      [
        'Clock offset',
        h.clock ? `${h.clock.offsetMs} ms${h.clock.warning ? ' (check time sync)' : ''}` : '-',
      ],
      ['Host id', h.id],
    ]),
    el('h3', {}, 'Metrics'),
    m === null
      ? el('p', {}, 'No heartbeat has carried metrics yet.')
      : facts('host-metrics', [
          ['Load', `${m.load1.toFixed(2)} / ${m.load5.toFixed(2)} / ${m.load15.toFixed(2)}`],
          ['Memory', `${bytes(m.memTotalBytes - m.memAvailableBytes)} used of ${bytes(m.memTotalBytes)}`],
          ['Disk', `${bytes(m.diskTotalBytes - m.diskFreeBytes)} used of ${bytes(m.diskTotalBytes)}`],
          ['Uptime', `${Math.round(m.uptimeSeconds / 3600)} h`],
        ]),
    el('h3', {}, 'Pinned certificates'),
    table(
      'host-pins',
      ['Role', 'SHA-256 fingerprint', 'Expires', 'Pinned', 'Superseded'],
      d.pins.map((p) =>
        row(
          {},
          p.role,
          el('code', {}, p.fingerprint),
          when(p.notAfter),
          when(p.createdAt),
          p.superseded ? 'yes' : 'no',
        ),
      ),
    ),
    el('h3', {}, 'Recent events'),
    table(
      'host-events',
      ['Time', 'Event', 'Service', 'Detail'],
      d.recentEvents.map((e) => row({}, when(e.time), e.type, e.service ?? '-', e.detail ?? '')),
    ),
  ];
}

interface RollbackAnswer {
  readonly outcome: string;
  readonly current: string | null;
  readonly from: string | null;
  readonly reason: string | null;
  readonly operationId: string;
}

/**
 * "Roll back" (scope `update`), after a confirmation: `POST /v1/hosts/:name/rollback`, the call
 * `corral controller rollback` makes; its answer shown as text in `st` (with `update` approvals:
 * that it waits for another operator, as the host's other actions say).
 */
function rollbackButton(name: string, previous: string | null, st: StatusLine, reload: () => void): Node {
  return actionButton('Roll back', 'rollback', async () => {
    const to = previous ?? 'its previous release';
    if (!window.confirm(`Roll ${name} back to ${to}?`)) return;
    try {
      const r = await api<unknown>('POST', `/v1/hosts/${encodeURIComponent(name)}/rollback`, {});
      if (isPendingApproval(r)) {
        st.say(outcome(r, ''));
        return;
      }
      const done = r as RollbackAnswer;
      if (done.outcome === 'rolled-back') {
        st.say(
          `Rolled back to ${done.current ?? 'no release'} (from ${done.from ?? '-'}), operation ${done.operationId}.`,
        );
      } else {
        st.fail(
          new Error(`Rollback failed: ${done.reason ?? 'no reason given'} (operation ${done.operationId})`),
        );
      }
      reload();
    } catch (e: unknown) {
      st.fail(e);
    }
  });
}

async function releases(name: string, st: StatusLine, reload: () => void): Promise<Node[]> {
  const r = await api<{ hosts: HostReleases[] }>('GET', `/v1/releases?host=${encodeURIComponent(name)}`);
  const h = r.hosts[0];
  if (!h) return [el('p', {}, 'No release information for this host.')];
  return [
    ...(can('update')
      ? [el('div', { class: 'controls' }, rollbackButton(name, h.previous, st, reload)), st.node]
      : []),
    facts('host-release', [
      ['Current', h.current ?? 'none'],
      ['Previous', h.previous ?? 'none'],
      ['Updater', h.updater ?? '-'],
      ['Busy', h.busy ? 'yes (an update is running)' : 'no'],
      ...(h.error !== null ? [['Updater error', el('span', { class: 'error' }, h.error)] as const] : []),
    ]),
    el('h3', {}, 'History'),
    table(
      'host-release-history',
      ['Time', 'Version', 'From', 'Outcome', 'Reason'],
      [...h.history]
        .reverse()
        .map((e) =>
          row(
            { 'data-version': e.version, 'data-outcome': e.outcome },
            when(e.time),
            e.version,
            e.from ?? '-',
            e.outcome,
            e.reason,
          ),
        ),
    ),
  ];
}

async function operations(name: string): Promise<Node[]> {
  const list = await api<{ operations: OperationView[] }>('GET', `/v1/ops?limit=${OPERATIONS_SEARCHED}`);
  const touching = await mapLimit(list.operations, 6, async (o) => {
    if (o.target === `host ${name}`) return true;
    const d = await api<OperationDetail>('GET', `/v1/ops/${encodeURIComponent(o.id)}?afterSeq=1000000000`);
    return d.steps.some((s) => s.host === name);
  });
  const ops = list.operations.filter((_, i) => touching[i] === true);
  return [
    el('p', {}, `${ops.length} of the newest ${list.operations.length} operations have a step on ${name}.`),
    table('host-ops', OPERATION_HEADERS, operationRows(ops)),
  ];
}

/**
 * `#/host/NAME/TAB`: one host, in tabs (overview, services, releases, operations, logs,
 * actions). The tab is part of the address, so it survives a reload and the back button.
 * Data tabs reload on fleet events; the logs tab is its own live stream.
 */
export function renderHost(root: HTMLElement, signal: AbortSignal, name: string, wanted: string): void {
  const tabs = HOST_TABS.filter((t) => t !== 'actions' || mayActOnHosts());
  const tab: HostTab = (tabs as readonly string[]).includes(wanted) ? (wanted as HostTab) : 'overview';
  const status = statusLine('host-status');
  const panel = el('section', { id: `tab-${tab}`, class: 'panel', 'aria-label': tab });
  const restartStatus = statusLine('restart-status');
  const rollbackStatus = statusLine('rollback-status');
  replace(
    root,
    el('p', {}, el('a', { href: '#/fleet' }, '← Fleet')),
    el('h2', {}, name),
    el(
      'nav',
      { class: 'tabs', 'aria-label': 'Host tabs' },
      ...tabs.map((t) =>
        el(
          'a',
          {
            href: `#/host/${encodeURIComponent(name)}/${t}`,
            'aria-current': t === tab ? 'page' : undefined,
            'data-tab': t,
          },
          t[0]?.toUpperCase() + t.slice(1),
        ),
      ),
    ),
    status.node,
    panel,
  );
  if (tab === 'logs') {
    renderLogTail(panel, signal, name);
    return;
  }
  const load = async (): Promise<void> => {
    if (tab === 'releases')
      replace(panel, ...(await releases(name, rollbackStatus, () => void load().catch(status.fail))));
    else if (tab === 'operations') replace(panel, ...(await operations(name)));
    else {
      const d = await api<HostDetail>('GET', `/v1/hosts/${encodeURIComponent(name)}`);
      if (tab === 'services') {
        replace(panel, ...hostServices(d, restartStatus, () => void load().catch(status.fail)));
      } else if (tab === 'actions') renderHostActions(panel, d, () => void load().catch(status.fail));
      else replace(panel, ...overview(d));
    }
    status.say('');
  };
  // The actions tab is not redrawn under the operator's hands (a typed confirmation stays).
  if (tab !== 'actions') onFleetChange(load, signal);
  status.say('loading…');
  void load().catch(status.fail);
}

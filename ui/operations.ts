import { api } from './api.js';
import { el, replace } from './dom.js';
import { onFleetChange } from './live.js';
import { field, row, statusLine, table, when } from './widgets.js';

export interface OperationView {
  readonly id: string;
  readonly kind: string;
  readonly state: string;
  readonly actor: string;
  readonly target: string;
  readonly createdAt: string;
  readonly finishedAt: string | null;
  readonly reason: string | null;
  readonly summary: { services: number; removed: number; hosts: number; failedHosts: number };
}
interface StepView {
  readonly host: string;
  readonly state: string;
  readonly services: number;
  readonly detail: string | null;
  readonly startedAt: string | null;
  readonly finishedAt: string | null;
}
interface LogEntry {
  readonly seq: number;
  readonly time: string;
  readonly level: string;
  readonly host: string | null;
  readonly message: string;
}
export interface OperationDetail {
  readonly operation: OperationView;
  readonly steps: readonly StepView[];
  readonly log: readonly LogEntry[];
}

const KINDS = ['deploy', 'teardown', 'update', 'reschedule', 'heal', 'retry'];
const STATES = ['running', 'succeeded', 'failed', 'partial'];
/** How often a running operation's detail is read again, in ms (its log is append-only). */
const FOLLOW_MS = 1000;

const opLink = (id: string): HTMLAnchorElement => el('a', { href: `#/ops/${encodeURIComponent(id)}` }, id);

/** One row per operation: id (a link to its detail), kind, state, target, actor, times. */
export function operationRows(ops: readonly OperationView[]): HTMLTableRowElement[] {
  return ops.map((o) =>
    row(
      { 'data-op': o.id, 'data-state': o.state },
      opLink(o.id),
      o.kind,
      o.state,
      o.target,
      o.actor,
      when(o.createdAt),
      when(o.finishedAt),
    ),
  );
}
export const OPERATION_HEADERS = ['Operation', 'Kind', 'State', 'Target', 'Actor', 'Started', 'Finished'];

/** The operations list (`GET /v1/ops`), newest first, filtered by kind, state and text; live. */
export function renderOperations(root: HTMLElement, signal: AbortSignal): void {
  const select = (id: string, all: string, values: readonly string[]): HTMLSelectElement =>
    el(
      'select',
      { id },
      el('option', { value: '' }, all),
      ...values.map((v) => el('option', { value: v }, v)),
    );
  const kind = select('ops-kind', 'every kind', KINDS);
  const state = select('ops-state', 'every state', STATES);
  const text = el('input', { id: 'ops-text', type: 'search', placeholder: 'target or actor' });
  const status = statusLine('ops-summary');
  const holder = el('div', {});
  replace(
    root,
    el('h2', {}, 'Operations'),
    el('div', { class: 'controls' }, field('Kind', kind), field('State', state), field('Search', text)),
    status.node,
    holder,
  );
  let ops: OperationView[] = [];
  const draw = (): void => {
    const t = text.value.trim().toLowerCase();
    const shown = ops.filter(
      (o) =>
        (kind.value === '' || o.kind === kind.value) &&
        (state.value === '' || o.state === state.value) &&
        (t === '' || o.target.toLowerCase().includes(t) || o.actor.toLowerCase().includes(t)),
    );
    replace(holder, table('ops', OPERATION_HEADERS, operationRows(shown)));
    status.say(`${shown.length} of ${ops.length} operations`);
  };
  const load = async (): Promise<void> => {
    ops = (await api<{ operations: OperationView[] }>('GET', '/v1/ops?limit=500')).operations;
    draw();
  };
  for (const c of [kind, state]) c.addEventListener('change', draw);
  text.addEventListener('input', draw);
  onFleetChange(load, signal);
  void load().catch(status.fail);
}

/**
 * One operation: what it is, its per-host steps and its append-only log, read again every
 * FOLLOW_MS while it runs (only the log lines after the last one shown). Resolves with the
 * operation once it has finished (or when `signal` ends the watch).
 */
export async function watchOperation(
  root: HTMLElement,
  id: string,
  signal: AbortSignal,
): Promise<OperationView | undefined> {
  const head = el('dl', { class: 'facts', id: 'op-facts' });
  const steps = el('div', {});
  const log = el('ol', { class: 'log', id: 'op-log' });
  replace(root, head, el('h3', {}, 'Steps'), steps, el('h3', {}, 'Log'), log);
  let afterSeq = 0;
  while (!signal.aborted) {
    const d = await api<OperationDetail>('GET', `/v1/ops/${encodeURIComponent(id)}?afterSeq=${afterSeq}`);
    const o = d.operation;
    replace(
      head,
      ...(
        [
          ['Operation', o.id],
          ['Kind', o.kind],
          ['State', o.state],
          ['Target', o.target],
          ['Actor', o.actor],
          ['Started', when(o.createdAt)],
          ['Finished', when(o.finishedAt)],
          ['Hosts', `${o.summary.hosts} (${o.summary.failedHosts} failed)`],
          ['Reason', o.reason ?? '-'],
        ] as const
      ).flatMap(([k, v]) => [el('dt', {}, k), el('dd', { 'data-fact': k.toLowerCase() }, v)]),
    );
    replace(
      steps,
      table(
        'op-steps',
        ['Host', 'State', 'Services', 'Detail', 'Started', 'Finished'],
        d.steps.map((s) =>
          row(
            { 'data-host': s.host, 'data-state': s.state },
            el('a', { href: `#/host/${encodeURIComponent(s.host)}` }, s.host),
            s.state,
            s.services,
            s.detail ?? '',
            when(s.startedAt),
            when(s.finishedAt),
          ),
        ),
      ),
    );
    for (const l of d.log) {
      log.appendChild(
        el(
          'li',
          { 'data-level': l.level },
          el('time', {}, when(l.time)),
          ` ${l.level} `,
          l.host === null ? '' : `${l.host}: `,
          l.message,
        ),
      );
      afterSeq = Math.max(afterSeq, l.seq);
    }
    if (o.state !== 'running') return o;
    await new Promise<void>((resolve) => {
      const t = setTimeout(resolve, FOLLOW_MS);
      signal.addEventListener('abort', () => {
        clearTimeout(t);
        resolve();
      });
    });
  }
  return undefined;
}

/** `#/ops/ID`: one operation, followed live. */
export function renderOperation(root: HTMLElement, signal: AbortSignal, id: string): void {
  const status = statusLine('op-status');
  const body = el('div', {});
  replace(
    root,
    el('p', {}, el('a', { href: '#/ops' }, '← Operations')),
    el('h2', {}, `Operation ${id}`),
    status.node,
    body,
  );
  void watchOperation(body, id, signal).catch(status.fail);
}

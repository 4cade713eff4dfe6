import { api, isPendingApproval } from './api.js';
import { el, replace } from './dom.js';
import { watchOperation, type OperationView } from './operations.js';
import { rolloutControls } from './rollout-options.js';
import { can } from './session.js';
import { actionButton, field, row, statusLine, table, when } from './widgets.js';

interface HostReleases {
  readonly host: string;
  readonly current: string | null;
  readonly previous: string | null;
  readonly updater: string | null;
  readonly busy: boolean;
  readonly error: string | null;
  readonly history: readonly { time: string; version: string; outcome: string; reason: string }[];
}
interface UpdateAnswer {
  readonly operationId: string | null;
  readonly dryRun: boolean;
  readonly version: string;
  readonly hosts: readonly { host: string; outcome: string; version: string | null; reason: string | null }[];
  readonly ok: boolean;
}
/** How often the running push's operation is looked for, in ms. */
const FIND_OPERATION_MS = 500;

/**
 * Releases: every host's current and previous release and its last outcome
 * (`GET /v1/releases`), and, for an operator with `update`, a push: pick a release file and
 * hosts (or all), dry run or push (`POST /v1/update`, the tarball as the body). While a push
 * runs, its operation's per-host steps are shown live.
 */
export function renderReleases(root: HTMLElement, signal: AbortSignal): void {
  const status = statusLine('releases-status');
  const holder = el('div', {});
  const push = el('section', { id: 'release-push', 'aria-label': 'Push a release' });
  replace(root, el('h2', {}, 'Releases'), push, status.node, holder);
  const picked = new Set<string>();
  const updating = can('update');

  const load = async (): Promise<void> => {
    status.say('asking every host’s updater…');
    const r = await api<{ hosts: HostReleases[] }>('GET', '/v1/releases');
    replace(
      holder,
      table(
        'releases',
        [...(updating ? ['Push'] : []), 'Host', 'Current', 'Previous', 'Updater', 'Last outcome', 'Error'],
        r.hosts.map((h) => {
          const last = h.history.at(-1);
          const box = el('input', {
            type: 'checkbox',
            id: `pick-${h.host}`,
            'aria-label': `push to ${h.host}`,
            checked: picked.has(h.host),
          });
          box.addEventListener('change', () => (box.checked ? picked.add(h.host) : picked.delete(h.host)));
          return row(
            { 'data-host': h.host },
            ...(updating ? [box] : []),
            el('a', { href: `#/host/${encodeURIComponent(h.host)}/releases` }, h.host),
            h.current ?? '-',
            h.previous ?? '-',
            h.updater ?? '-',
            last ? `${last.version} ${last.outcome} (${when(last.time)})` : '-',
            h.error ?? '',
          );
        }),
      ),
    );
    status.say(`${r.hosts.length} hosts`);
  };

  if (updating) {
    const file = el('input', { id: 'release-file', type: 'file', accept: '.tar.gz,.tgz,application/gzip' });
    const all = el('input', { id: 'release-all', type: 'checkbox' });
    const force = el('input', { id: 'release-force', type: 'checkbox' });
    const rollout = rolloutControls('release', 'a quarter of the hosts');
    const st = statusLine('push-status');
    const result = el('div', { id: 'push-result' });
    const progress = el('div', { id: 'push-progress' });
    const send = (dryRun: boolean) => async (): Promise<void> => {
      const f = file.files?.[0];
      if (!f) {
        st.fail(new Error('choose a release file first'));
        return;
      }
      const q = new URLSearchParams();
      if (all.checked) q.set('all', 'true');
      else if (picked.size > 0) q.set('hosts', [...picked].join(','));
      else {
        st.fail(new Error('pick hosts, or all'));
        return;
      }
      if (dryRun) q.set('dryRun', 'true');
      if (force.checked) q.set('force', 'true');
      // Flattened into the query, as `corral controller update` sends them.
      try {
        for (const [k, v] of Object.entries(rollout.read())) q.set(k, String(v));
      } catch (e: unknown) {
        st.fail(e);
        return;
      }
      st.say(dryRun ? 'dry run…' : 'pushing…');
      replace(result);
      const started = Date.now();
      let finished = false;
      if (!dryRun) void follow(progress, started, signal, () => finished).catch(st.fail);
      try {
        const a = await api<UpdateAnswer>('POST', `/v1/update?${q.toString()}`, f);
        if (isPendingApproval(a)) {
          st.say(`Waiting for approval: request ${a.approval.id}`);
          return;
        }
        st.say(
          `${a.dryRun ? 'Dry run of' : 'Pushed'} ${a.version}: ${a.ok ? 'every host ok' : 'not every host ok'}`,
        );
        replace(
          result,
          table(
            'push-hosts',
            ['Host', 'Outcome', 'Version', 'Reason'],
            a.hosts.map((h) =>
              row(
                { 'data-host': h.host, 'data-outcome': h.outcome },
                h.host,
                h.outcome,
                h.version ?? '-',
                h.reason ?? '',
              ),
            ),
          ),
        );
        await load();
      } catch (e: unknown) {
        st.fail(e);
      } finally {
        finished = true;
      }
    };
    replace(
      push,
      el('h3', {}, 'Push a release'),
      el(
        'div',
        { class: 'controls' },
        field('Release file', file),
        field('All hosts', all),
        field('Force (a version that rolled back before)', force),
      ),
      rollout.node,
      el(
        'div',
        { class: 'controls' },
        actionButton('Dry run', 'release-dry-run', send(true)),
        actionButton('Push', 'release-push', send(false)),
      ),
      el('p', {}, 'Without “All hosts”, the release goes to the hosts ticked below.'),
      st.node,
      progress,
      result,
    );
  }
  void load().catch(status.fail);
}

/**
 * Finds the update operation the push started (the newest one since `since`) and shows its
 * steps live until it finishes; gives up once the push has answered without one (a refusal).
 */
async function follow(
  into: HTMLElement,
  since: number,
  signal: AbortSignal,
  answered: () => boolean,
): Promise<void> {
  while (!signal.aborted) {
    const last = answered();
    const ops = (await api<{ operations: OperationView[] }>('GET', '/v1/ops?limit=10')).operations;
    const op = ops.find((o) => o.kind === 'update' && Date.parse(o.createdAt) >= since - 1000);
    if (op) {
      await watchOperation(into, op.id, signal);
      return;
    }
    if (last) return;
    await new Promise((r) => setTimeout(r, FIND_OPERATION_MS));
  }
}

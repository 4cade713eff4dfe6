import { api, isPendingApproval } from './api.js';
import { el, replace, type Child } from './dom.js';
import type { HostDetail } from './host.js';
import { can } from './session.js';
import { actionButton, field, statusLine } from './widgets.js';

interface PlacementAnswer {
  readonly eligibility: string;
  readonly changes: { readonly plan: readonly unknown[]; readonly removed: readonly unknown[] };
}

/** What a change answered, in words: run, or waiting for approval (with a link to the queue). */
export function outcome(body: unknown, done: string): Child {
  if (isPendingApproval(body)) {
    const a = body.approval;
    return el(
      'span',
      { 'data-approval': a.id },
      `Waiting for ${a.required} approval${a.required === 1 ? '' : 's'}: request ${a.id} `,
      el('a', { href: '#/approvals' }, '(approvals)'),
    );
  }
  return done;
}

const placement = (p: PlacementAnswer): string =>
  `eligibility ${p.eligibility}; ${p.changes.plan.length} instances move or are placed, ${p.changes.removed.length} stop`;

/**
 * The host's actions, each the admin API call the CLI makes, offered only when the operator's
 * scopes allow it: drain, eligibility and labels (`deploy`), decommission (`decommission`,
 * after typing the host's name). An action that needs approval says it is waiting.
 */
export function renderHostActions(root: HTMLElement, d: HostDetail, reload: () => void): void {
  const name = d.host.name;
  const path = `/v1/hosts/${encodeURIComponent(name)}`;
  const parts: Node[] = [];
  if (can('deploy')) {
    const st = statusLine('drain-status');
    const deadline = el('input', { id: 'drain-deadline', type: 'number', min: '0', value: '300' });
    parts.push(
      el('h3', {}, 'Drain'),
      el(
        'p',
        {},
        'Moves every service off this host (make-before-break); what has not moved by the deadline is stopped.',
      ),
      el(
        'div',
        { class: 'controls' },
        field('Deadline (seconds)', deadline),
        actionButton('Drain', 'drain', async () => {
          try {
            const body = await api<PlacementAnswer>('POST', `${path}/drain`, {
              deadlineMs: Math.round(Number(deadline.value) * 1000),
            });
            st.say(outcome(body, `Draining: ${placement(body)}`));
            reload();
          } catch (e: unknown) {
            st.fail(e);
          }
        }),
      ),
      st.node,
    );

    const est = statusLine('eligibility-status');
    const eligible = (d.host.eligibility ?? 'eligible') === 'eligible';
    parts.push(
      el('h3', {}, 'Eligibility'),
      el('p', {}, `This host ${eligible ? 'takes' : 'takes no'} new instances.`),
      actionButton(eligible ? 'Make ineligible' : 'Make eligible', 'eligibility', async () => {
        try {
          const body = await api<PlacementAnswer>('POST', `${path}/eligibility`, { eligible: !eligible });
          est.say(placement(body));
          reload();
        } catch (e: unknown) {
          est.fail(e);
        }
      }),
      est.node,
    );

    const lst = statusLine('labels-status');
    const set = el('input', { id: 'label-set', type: 'text', placeholder: 'key=value, key2=value2' });
    const remove = el('input', { id: 'label-remove', type: 'text', placeholder: 'key, key2' });
    const labels = (dryRun: boolean) => async (): Promise<void> => {
      try {
        const pairs = set.value
          .split(',')
          .map((p) => p.trim())
          .filter((p) => p !== '');
        const setMap: Record<string, string> = {};
        for (const p of pairs) {
          const i = p.indexOf('=');
          if (i <= 0) throw new Error(`"${p}" is not key=value`);
          setMap[p.slice(0, i)] = p.slice(i + 1);
        }
        const rm = remove.value
          .split(',')
          .map((k) => k.trim())
          .filter((k) => k !== '');
        const body = await api<PlacementAnswer>('POST', `${path}/labels`, {
          set: setMap,
          remove: rm,
          dryRun,
        });
        lst.say(`${dryRun ? 'Dry run: ' : ''}${placement(body)}`);
        if (!dryRun) reload();
      } catch (e: unknown) {
        lst.fail(e);
      }
    };
    parts.push(
      el('h3', {}, 'Labels'),
      el(
        'div',
        { class: 'controls' },
        field('Set', set),
        field('Remove', remove),
        actionButton('Dry run', 'labels-dry-run', labels(true)),
        actionButton('Apply labels', 'labels', labels(false)),
      ),
      lst.node,
    );
  }
  if (can('decommission')) {
    const st = statusLine('decommission-status');
    const confirm = el('input', { id: 'decommission-confirm', type: 'text', autocomplete: 'off' });
    const go = actionButton(
      'Decommission',
      'decommission',
      async () => {
        if (confirm.value !== name) return;
        try {
          const body = await api<unknown>('POST', `${path}/decommission`);
          st.say(outcome(body, `${name} is decommissioned; its pins are dropped.`));
        } catch (e: unknown) {
          st.fail(e);
        }
      },
      { class: 'danger', disabled: true },
    );
    confirm.addEventListener('input', () => {
      go.disabled = confirm.value !== name;
    });
    parts.push(
      el('h3', {}, 'Decommission'),
      el(
        'p',
        {},
        'Drops the host’s pins (new connections refused, live ones closed) and tells it to wipe itself. This cannot be undone.',
      ),
      el('div', { class: 'controls' }, field(`Type ${name} to confirm`, confirm), go),
      st.node,
    );
  }
  replace(root, ...parts);
}

import { api } from './api.js';
import { el, replace } from './dom.js';
import { onFleetChange } from './live.js';
import { can, session } from './session.js';
import { actionButton, row, statusLine, table, when } from './widgets.js';

interface ApprovalView {
  readonly id: string;
  readonly action: string;
  readonly target: string;
  readonly state: string;
  readonly requester: string;
  readonly required: number;
  readonly approvers: readonly string[];
  readonly createdAt: string;
  readonly expiresAt: string;
  readonly decidedAt: string | null;
  readonly reason: string | null;
}

/**
 * The approval queue (`GET /v1/approvals`), pending first: who asked for what, how many have
 * approved. Approve and reject are offered to an operator with `approve` on requests not their
 * own (the server refuses one's own as well); cancel to the requester. Live from the event stream.
 */
export function renderApprovals(root: HTMLElement, signal: AbortSignal): void {
  const status = statusLine('approvals-status');
  const pendingHolder = el('div', {});
  const doneHolder = el('div', {});
  replace(
    root,
    el('h2', {}, 'Approvals'),
    status.node,
    el('h3', {}, 'Pending'),
    pendingHolder,
    el('h3', {}, 'Decided'),
    doneHolder,
  );
  const me = session()?.operator;
  const decide = (a: ApprovalView, verb: 'approve' | 'reject' | 'cancel') => async (): Promise<void> => {
    try {
      const body = verb === 'reject' ? { reason: `rejected in the dashboard by ${me ?? '?'}` } : undefined;
      const after = await api<ApprovalView>(
        'POST',
        `/v1/approvals/${encodeURIComponent(a.id)}/${verb}`,
        body,
      );
      status.say(`${a.id} is ${after.state}`);
      await load();
    } catch (e: unknown) {
      status.fail(e);
    }
  };
  const actions = (a: ApprovalView): Node => {
    const cell = el('span', { class: 'actions' });
    if (a.state !== 'pending') return cell;
    if (a.requester === me) cell.append(actionButton('Cancel', 'approval-cancel', decide(a, 'cancel')));
    else if (can('approve') && !a.approvers.includes(me ?? '')) {
      cell.append(
        actionButton('Approve', 'approval-approve', decide(a, 'approve'), {
          'aria-label': `approve ${a.id}`,
        }),
        ' ',
        actionButton('Reject', 'approval-reject', decide(a, 'reject'), { 'aria-label': `reject ${a.id}` }),
      );
    } else if (a.approvers.includes(me ?? '')) cell.append('you approved');
    return cell;
  };
  const rows = (list: readonly ApprovalView[]): HTMLTableRowElement[] =>
    list.map((a) =>
      row(
        { 'data-approval': a.id, 'data-state': a.state },
        a.id,
        a.action,
        a.target,
        a.requester,
        `${a.approvers.length}/${a.required}${a.approvers.length > 0 ? ` (${a.approvers.join(', ')})` : ''}`,
        a.state,
        when(a.createdAt),
        a.state === 'pending' ? `expires ${when(a.expiresAt)}` : when(a.decidedAt),
        a.reason ?? '',
        actions(a),
      ),
    );
  const headers = [
    'Request',
    'Action',
    'Target',
    'Asked by',
    'Approved',
    'State',
    'Asked',
    'Decided',
    'Reason',
    '',
  ];
  const load = async (): Promise<void> => {
    const all = (await api<{ approvals: ApprovalView[] }>('GET', '/v1/approvals')).approvals;
    const pending = all.filter((a) => a.state === 'pending');
    const done = all.filter((a) => a.state !== 'pending');
    replace(
      pendingHolder,
      pending.length === 0
        ? el('p', {}, 'Nothing waits for approval.')
        : table('approvals-pending', headers, rows(pending)),
    );
    replace(doneHolder, table('approvals-done', headers, rows(done)));
    status.say(`${pending.length} pending, ${done.length} decided`);
  };
  onFleetChange(load, signal);
  void load().catch(status.fail);
}

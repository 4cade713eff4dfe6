import { api, isPendingApproval } from './api.js';
import { el, replace } from './dom.js';
import { session } from './session.js';
import { actionButton, field, row, statusLine, table, when } from './widgets.js';

interface OperatorView {
  readonly name: string;
  readonly kind: string;
  readonly scopes: readonly string[];
  readonly state: string;
  readonly createdAt: string;
  readonly createdBy: string;
  readonly expiresAt: string | null;
  readonly revokedAt: string | null;
  readonly fingerprint: string | null;
}
interface CreatedOperator {
  readonly operator: OperatorView;
  readonly token?: string;
}
const SCOPES = ['read', 'metrics', 'deploy', 'update', 'enroll', 'decommission', 'approve', 'admin'];

/**
 * Operators (admin scope): the list (`GET /v1/operators`), create a token operator with scopes
 * and a lifetime (the token is shown once, here, and nowhere else), revoke and rotate. An
 * operator with a certificate is created with the CLI (its key belongs in a file, not a page).
 */
export function renderOperators(root: HTMLElement): void {
  const status = statusLine('operators-status');
  const holder = el('div', {});
  const secret = el('div', { id: 'operator-secret', 'aria-live': 'polite' });
  const name = el('input', { id: 'operator-name', type: 'text', autocomplete: 'off', required: true });
  const days = el('input', { id: 'operator-days', type: 'number', min: '1', placeholder: 'never expires' });
  const boxes = SCOPES.map((s) =>
    el('input', { id: `scope-${s}`, type: 'checkbox', value: s, checked: s === 'read' }),
  );
  const showSecret = (verb: string, c: CreatedOperator): void => {
    if (isPendingApproval(c)) {
      replace(secret, `Waiting for approval: request ${c.approval.id}`);
      return;
    }
    replace(
      secret,
      el('p', {}, `${verb} ${c.operator.name}. Its token is shown this once; copy it now:`),
      el('output', { id: 'operator-token', class: 'secret' }, c.token ?? '(no token)'),
    );
  };
  const change = (verb: 'revoke' | 'rotate', who: string) => async (): Promise<void> => {
    if (!window.confirm(`${verb === 'revoke' ? 'Revoke' : 'Rotate the token of'} operator ${who}?`)) return;
    try {
      const r = await api<unknown>('POST', `/v1/operators/${encodeURIComponent(who)}/${verb}`);
      if (verb === 'rotate') showSecret('Rotated', r as CreatedOperator);
      else
        replace(
          secret,
          isPendingApproval(r) ? `Waiting for approval: request ${r.approval.id}` : `Revoked ${who}.`,
        );
      await load();
    } catch (e: unknown) {
      status.fail(e);
    }
  };
  const me = session()?.operator;
  const load = async (): Promise<void> => {
    const list = (await api<{ operators: OperatorView[] }>('GET', '/v1/operators')).operators;
    replace(
      holder,
      table(
        'operators',
        ['Name', 'Kind', 'Scopes', 'State', 'Created', 'By', 'Expires', ''],
        list.map((o) =>
          row(
            { 'data-operator': o.name, 'data-state': o.state },
            o.name,
            o.kind,
            o.scopes.join(', '),
            o.state,
            when(o.createdAt),
            o.createdBy,
            o.expiresAt === null ? 'never' : when(o.expiresAt),
            o.state !== 'active' || o.name === me
              ? ''
              : el(
                  'span',
                  { class: 'actions' },
                  ...(o.kind === 'token'
                    ? [
                        actionButton('Rotate', 'operator-rotate', change('rotate', o.name), {
                          'aria-label': `rotate ${o.name}`,
                        }),
                        ' ',
                      ]
                    : []),
                  actionButton('Revoke', 'operator-revoke', change('revoke', o.name), {
                    'aria-label': `revoke ${o.name}`,
                  }),
                ),
          ),
        ),
      ),
    );
    status.say(`${list.length} operators`);
  };
  const create = actionButton('Create', 'operator-create', async () => {
    try {
      const scopes = boxes.filter((b) => b.checked).map((b) => b.value);
      const d = Number(days.value);
      const c = await api<CreatedOperator>('POST', '/v1/operators', {
        name: name.value.trim(),
        scopes,
        ...(days.value !== '' && d > 0 && { expiresInSeconds: Math.round(d * 86_400) }),
      });
      showSecret('Created', c);
      name.value = '';
      await load();
    } catch (e: unknown) {
      status.fail(e);
    }
  });
  const form = el(
    'form',
    { id: 'operator-create', 'aria-label': 'Create an operator' },
    el('h3', {}, 'Create an operator'),
    el('div', { class: 'controls' }, field('Name', name), field('Expires after (days)', days)),
    el(
      'fieldset',
      { class: 'controls' },
      el('legend', {}, 'Scopes'),
      ...boxes.map((b) => el('span', { class: 'check' }, b, el('label', { for: b.id }, b.value))),
    ),
    create,
  );
  form.addEventListener('submit', (event) => event.preventDefault());
  replace(root, el('h2', {}, 'Operators'), form, secret, status.node, holder);
  void load().catch(status.fail);
}

import { api } from './api.js';
import { el, replace } from './dom.js';
import { field, row, statusLine, table, when } from './widgets.js';

interface AuditEntry {
  readonly seq: number;
  readonly time: string;
  readonly actor: string;
  readonly action: string;
  readonly target: string;
  readonly details: Readonly<Record<string, unknown>>;
  readonly hash: string;
}
interface AuditVerification {
  readonly ok: boolean;
  readonly checked: number;
  readonly headHash: string | null;
  readonly firstBroken: { seq: number; reason: string; message: string } | null;
}
/** Entries the page reads: the newest (the API pages by sequence number). */
const AUDIT_PAGE = 1000;

/**
 * The audit log: the chain's verification (`GET /v1/audit/verify`: whole, with its head hash,
 * or where it breaks) and the newest entries (`GET /v1/audit`), filtered by actor, action and
 * target, newest first.
 */
export function renderAudit(root: HTMLElement): void {
  const verdict = el('p', { id: 'audit-verify', role: 'status' }, 'verifying the chain…');
  const status = statusLine('audit-status');
  const actor = el('input', { id: 'audit-actor', type: 'search' });
  const action = el('input', { id: 'audit-action', type: 'search' });
  const target = el('input', { id: 'audit-target', type: 'search' });
  const holder = el('div', {});
  replace(
    root,
    el('h2', {}, 'Audit'),
    verdict,
    el('div', { class: 'controls' }, field('Actor', actor), field('Action', action), field('Target', target)),
    status.node,
    holder,
  );
  let entries: AuditEntry[] = [];
  const draw = (): void => {
    const has = (v: string, q: HTMLInputElement): boolean =>
      v.toLowerCase().includes(q.value.trim().toLowerCase());
    const shown = entries.filter(
      (e) => has(e.actor, actor) && has(e.action, action) && has(e.target, target),
    );
    replace(
      holder,
      table(
        'audit',
        ['#', 'Time', 'Actor', 'Action', 'Target', 'Details'],
        shown.map((e) =>
          row(
            { 'data-seq': String(e.seq) },
            e.seq,
            when(e.time),
            e.actor,
            e.action,
            e.target,
            el('code', {}, JSON.stringify(e.details)),
          ),
        ),
      ),
    );
    status.say(`${shown.length} of the newest ${entries.length} entries`);
  };
  for (const q of [actor, action, target]) q.addEventListener('input', draw);
  void (async () => {
    const v = await api<AuditVerification>('GET', '/v1/audit/verify');
    verdict.classList.add(v.ok ? 'ok' : 'error');
    replace(
      verdict,
      v.ok
        ? `Chain verified: ${v.checked} entries, head hash `
        : `Chain broken at entry ${v.firstBroken?.seq ?? '?'} (${v.firstBroken?.reason ?? '?'}): ${v.firstBroken?.message ?? ''}`,
      v.ok ? el('code', { id: 'audit-head' }, v.headHash ?? 'none (empty log)') : '',
    );
    const after = Math.max(0, v.checked - AUDIT_PAGE);
    entries = (
      await api<{ entries: AuditEntry[] }>('GET', `/v1/audit?after=${after}&limit=${AUDIT_PAGE}`)
    ).entries.reverse();
    draw();
  })().catch(status.fail);
}

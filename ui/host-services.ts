import { api } from './api.js';
import { el } from './dom.js';
import type { HostDetail } from './host.js';
import { can } from './session.js';
import { actionButton, table, when, type StatusLine } from './widgets.js';

/** What `POST /v1/restart` answers (protocol/admin-restart.ts). */
interface RestartAnswer {
  readonly operationId: string;
  readonly state: string;
  readonly ok: boolean;
  readonly instances: readonly {
    readonly host: string;
    readonly instance: string;
    readonly ok: boolean;
    readonly pid: number | null;
    readonly restarts: number | null;
    readonly reason: string | null;
  }[];
}

/** One instance's restart result, in words. */
function said(a: RestartAnswer, service: string): string {
  const r = a.instances[0];
  if (!r) return `${service}: nothing restarted (operation ${a.operationId} ${a.state})`;
  return r.ok
    ? `Restarted ${r.instance}: pid ${r.pid ?? '-'}, ${r.restarts ?? '-'} restarts (operation ${a.operationId})`
    : `Restart of ${r.instance} failed: ${r.reason ?? 'no reason given'} (operation ${a.operationId})`;
}

/**
 * The host's services, each with a Restart button for an operator with `deploy`: the call
 * `corral controller restart SERVICE --host HOST` makes (`POST /v1/restart`), one instance on
 * this host. `status` outlives the table's redraws, so a result stays while the table reloads.
 */
export function hostServices(d: HostDetail, status: StatusLine, reload: () => void): Node[] {
  const host = d.host.name;
  const restarting = can('deploy');
  return [
    table(
      'host-services',
      [
        'Service',
        'State',
        'Restarts',
        'Pid',
        'Last error',
        'Since',
        'Runtime',
        ...(restarting ? ['Actions'] : []),
      ],
      d.services.map((s) =>
        el(
          'tr',
          { 'data-service': s.name, 'data-state': s.state },
          el('td', {}, s.name),
          el('td', {}, s.state),
          el('td', { 'data-restarts': String(s.restarts) }, s.restarts),
          el('td', {}, s.pid ?? '-'),
          el('td', { class: 'error' }, s.lastError ?? ''),
          el('td', {}, when(s.since)),
          el('td', {}, s.image ? `${s.runtime ?? 'container'} ${s.image}` : (s.runtime ?? 'process')),
          restarting &&
            el(
              'td',
              {},
              actionButton(
                'Restart',
                'restart',
                async () => {
                  status.say(`restarting ${s.name}…`);
                  try {
                    const a = await api<RestartAnswer>('POST', '/v1/restart', { service: s.name, host });
                    if (a.ok) status.say(said(a, s.name));
                    else status.fail(new Error(said(a, s.name)));
                    reload();
                  } catch (e: unknown) {
                    status.fail(e);
                  }
                },
                { 'aria-label': `Restart ${s.name} on ${host}` },
              ),
            ),
        ),
      ),
    ),
    status.node,
  ];
}

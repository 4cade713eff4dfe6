import { parse as parseYaml } from 'yaml';
import { api } from './api.js';
import { el, replace } from './dom.js';
import { watchOperation } from './operations.js';
import { rolloutControls, type RolloutOptions } from './rollout-options.js';
import { actionButton, field, row, statusLine, table } from './widgets.js';

interface PlanEntry {
  readonly service: string;
  readonly host: string;
  readonly change: string;
  readonly previousHost: string | null;
  readonly changed?: readonly string[];
  readonly restarts?: boolean;
}
interface DeployAnswer {
  readonly operationId: string | null;
  readonly dryRun: boolean;
  readonly plan: readonly PlanEntry[];
  readonly removed: readonly { service: string; host: string }[];
  readonly pending: readonly { service: string; reason: string }[];
  readonly hosts: readonly { host: string; outcome: string; reason: string | null }[];
  readonly ok: boolean;
}

/** What the plan does to one instance, in words (the CLI's plan column). */
function effect(p: PlanEntry): string {
  if (p.change === 'placed') return 'starts';
  if (p.change === 'moved') return `moves from ${p.previousHost ?? '?'}`;
  return p.restarts === true ? 'restarts' : 'unchanged';
}

function planView(a: DeployAnswer): Node[] {
  return [
    table(
      'deploy-plan',
      ['Service', 'Host', 'Effect', 'Changed fields'],
      [
        ...a.plan.map((p) =>
          row(
            { 'data-service': p.service, 'data-change': p.change },
            p.service,
            p.host,
            effect(p),
            (p.changed ?? []).join(', '),
          ),
        ),
        ...a.removed.map((r) =>
          row({ 'data-service': r.service, 'data-change': 'removed' }, r.service, r.host, 'removed', ''),
        ),
        ...a.pending.map((p) =>
          row(
            { 'data-service': p.service, 'data-change': 'pending' },
            p.service,
            '-',
            'waits for a host',
            p.reason,
          ),
        ),
      ],
    ),
  ];
}

/** The largest spec the page sends, as the CLI's file limit (1 MiB). */
const MAX_SPEC_CHARS = 1024 * 1024;

/**
 * The deploy page: paste (or load from a file) a deployment spec as YAML or JSON, see the dry run's
 * plan (`POST /v1/deploy` with `dryRun`), then apply the same text and watch its operation.
 * Apply is offered only after a dry run of exactly the text in the box.
 */
export function renderDeploy(root: HTMLElement, signal: AbortSignal): void {
  const spec = el('textarea', {
    id: 'deploy-spec',
    rows: '14',
    spellcheck: 'false',
    placeholder: 'services:\n  - name: api\n    command: node\n    args: [server.js]',
  });
  const file = el('input', {
    id: 'deploy-file',
    type: 'file',
    accept: '.yaml,.yml,.json,application/json,application/yaml',
  });
  const allowPending = el('input', { id: 'deploy-allow-pending', type: 'checkbox' });
  const rollout = rolloutControls('deploy', 'all at once', true);
  const status = statusLine('deploy-status');
  const plan = el('div', { id: 'deploy-plan-holder' });
  const watch = el('div', { id: 'deploy-operation' });
  let planned: string | undefined;

  // YAML or JSON, as `corral controller deploy` reads a spec file (JSON is YAML too); the
  // server checks the spec itself, this only turns the text into the request's object.
  const parse = (): unknown => {
    if (spec.value.length > MAX_SPEC_CHARS) throw new Error('the spec is larger than 1 MiB');
    try {
      return parseYaml(spec.value, { maxAliasCount: 100 }) as unknown;
    } catch (e: unknown) {
      throw new Error(`the spec is not YAML or JSON: ${e instanceof Error ? e.message : String(e)}`, {
        cause: e,
      });
    }
  };
  // The body `corral controller deploy` sends: `rollout` only when an option is set.
  const body = (dryRun: boolean): Record<string, unknown> => {
    const r: RolloutOptions = rollout.read();
    return {
      spec: parse(),
      dryRun,
      ...(allowPending.checked && { allowPending: true }),
      ...(Object.keys(r).length > 0 && { rollout: r }),
    };
  };

  const apply = actionButton(
    'Apply',
    'deploy-apply',
    async () => {
      try {
        if (planned !== spec.value) throw new Error('the spec changed since the dry run: run it again');
        const a = await api<DeployAnswer>('POST', '/v1/deploy', body(false));
        status.say(a.operationId === null ? 'Nothing to do.' : `Deploying: operation ${a.operationId}`);
        if (a.operationId !== null) {
          const done = await watchOperation(watch, a.operationId, signal);
          if (done) status.say(`Operation ${done.id} ${done.state}.`);
        }
      } catch (e: unknown) {
        status.fail(e);
      }
    },
    { disabled: true },
  );
  const dryRun = actionButton('Dry run', 'deploy-dry-run', async () => {
    try {
      const a = await api<DeployAnswer>('POST', '/v1/deploy', body(true));
      planned = spec.value;
      replace(plan, el('h3', {}, 'Plan'), ...planView(a));
      status.say(
        `Dry run: ${a.plan.length} instances, ${a.removed.length} removed, ${a.pending.length} waiting.`,
      );
      apply.disabled = false;
    } catch (e: unknown) {
      planned = undefined;
      apply.disabled = true;
      status.fail(e);
    }
  });
  spec.addEventListener('input', () => {
    apply.disabled = planned !== spec.value;
  });
  file.addEventListener('change', () => {
    const f = file.files?.[0];
    if (f)
      void f.text().then((t) => {
        spec.value = t;
        apply.disabled = true;
      });
  });
  replace(
    root,
    el('h2', {}, 'Deploy'),
    el('p', {}, 'The spec is the same document `corral controller deploy` takes, written as JSON.'),
    field('Deployment spec (YAML or JSON)', spec),
    el(
      'div',
      { class: 'controls' },
      field('Load from a file', file),
      field('Allow pending instances', allowPending),
    ),
    rollout.node,
    el('div', { class: 'controls' }, dryRun, apply),
    status.node,
    plan,
    watch,
  );
}

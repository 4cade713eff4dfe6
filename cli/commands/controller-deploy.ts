import { createInterface } from 'node:readline/promises';
import type { Command } from 'commander';
import type {
  DeployResponse,
  PlanEntry,
  HostDispatchResult,
  ServiceListResponse,
  ServiceTeardownRequest,
  ServiceTeardownResponse,
} from '../../protocol/deployment.js';
import { SERVICE_STATES } from '../../protocol/heartbeat.js';
import { adminClientFor } from '../admin-client.js';
import { addAdminTargetOptions, type AdminTargetOptions } from '../controller-home.js';
import { readDeploymentFile } from '../deployment-file.js';
import { CliExit, EXIT_FAILURE, EXIT_USAGE } from '../exit.js';
import type { ApprovalPending } from '../../protocol/approvals.js';
import { isApprovalPending, printApprovalPending } from './approval-pending.js';
import { inline, renderJson, renderTable, shortContainerId, type Output } from '../output.js';
import { LONG_REQUEST_TIMEOUT_MS, withProgress } from '../follow-operation.js';
import {
  addHealthGateOptions,
  addRolloutOptions,
  rolloutFromFlags,
  type RolloutFlags,
} from '../rollout-flags.js';

type JsonOpt = AdminTargetOptions & { json?: boolean };
type DeployOpts = JsonOpt & { dryRun?: boolean; allowPending?: boolean } & RolloutFlags;

function hostTable(hosts: readonly HostDispatchResult[]): string {
  return renderTable(
    ['host', 'result', 'generation', 'services', 'reason'],
    hosts.map((h) => [h.host, h.outcome, h.generation, h.services, h.reason]),
  );
}

function failIfAnyHostFailed(hosts: readonly HostDispatchResult[], operationId: string | null): void {
  const failed = hosts.filter((h) => h.outcome === 'failed').length;
  if (failed > 0) {
    throw new CliExit(
      EXIT_FAILURE,
      `${failed} of ${hosts.length} hosts failed; their services are marked failed` +
        (operationId ? ` (corral controller ops show ${operationId})` : ''),
    );
  }
}

/** What a plan entry does to the running copy, in words: starts, restarts, moves, or nothing. */
export function effectOf(p: PlanEntry): string {
  if (p.change === 'placed') return 'starts';
  if (p.change === 'moved') return 'moves (stops there, starts here)';
  return p.restarts ? 'restarts' : 'unchanged';
}

/** `corral controller deploy`, `services`, `teardown`. */
export function registerControllerDeployCommands(controller: Command, io: Output): void {
  const deploy = addAdminTargetOptions(
    controller
      .command('deploy')
      .description('place a deployment spec (YAML or JSON) on the fleet and send every affected host its set')
      .argument('<spec>', 'deployment spec file')
      .option('--dry-run', 'print the plan; change nothing')
      .option(
        '--allow-pending',
        'store the spec even when some instances have no host yet (they wait as pending and are placed once one fits)',
      )
      .option('--json', 'print JSON'),
  );
  addHealthGateOptions(addRolloutOptions(deploy, 'every host at once')).action(
    async (file: string, opts: DeployOpts) => {
      const rollout = rolloutFromFlags(opts);
      const spec = await readDeploymentFile(file);
      const admin = await adminClientFor(opts);
      // The answer comes once every host's services have stayed up (or failed): the operation's
      // log is followed on stderr meanwhile.
      const res = await withProgress(admin, io, 'deploy', !opts.json && !opts.dryRun, () =>
        admin.post<DeployResponse>(
          '/v1/deploy',
          {
            spec,
            dryRun: opts.dryRun ?? false,
            ...(opts.allowPending && { allowPending: true }),
            ...(Object.keys(rollout).length > 0 && { rollout }),
          },
          LONG_REQUEST_TIMEOUT_MS,
        ),
      );
      if (opts.json) {
        io.out(renderJson(res));
      } else {
        io.out(
          renderTable(
            ['service', 'host', 'change', 'previous host', 'effect', 'fields changed'],
            res.plan.map((p) => [
              p.service,
              p.host,
              p.change,
              p.previousHost,
              effectOf(p),
              p.changed && p.changed.length > 0 ? p.changed.join(', ') : null,
            ]),
          ),
        );
        if (res.removed.length > 0) {
          io.out('\n');
          io.out(
            renderTable(
              ['removed service', 'from host'],
              res.removed.map((r) => [r.service, r.host]),
            ),
          );
        }
        if (res.pending.length > 0) {
          io.out('\n');
          io.out(
            renderTable(
              ['pending instance', 'reason'],
              res.pending.map((p) => [p.service, p.reason]),
            ),
          );
        }
        if (res.dryRun) {
          io.out('\ndry run: nothing was changed\n');
        } else {
          io.out('\n');
          io.out(hostTable(res.hosts));
          io.out(`\noperation ${res.operationId ?? '-'}\n`);
          if (res.state !== undefined && res.state !== 'succeeded') {
            io.out(`${res.state}${res.reason ? `: ${inline(res.reason)}` : ''}\n`);
          }
          if (res.revert) {
            const r = res.revert;
            io.out(
              `\nauto-revert: operation ${r.operationId ?? '-'} ${r.state}${r.reason ? `: ${inline(r.reason)}` : ''}\n`,
            );
            if (r.hosts.length > 0) io.out(hostTable(r.hosts));
          }
        }
      }
      if (res.state === 'halted') {
        throw new CliExit(
          EXIT_FAILURE,
          `${res.reason ?? 'halted'}; ${res.hosts.filter((h) => h.outcome === 'untouched').length} hosts untouched ` +
            `(corral controller ops resume ${res.operationId ?? '?'} | ops cancel ${res.operationId ?? '?'})`,
        );
      }
      failIfAnyHostFailed(res.hosts, res.operationId);
    },
  );

  addAdminTargetOptions(
    controller
      .command('services')
      .description('deployed services: host, desired and observed state, restarts, last error')
      .option('--host <name>', 'only services on this host')
      .option('--state <state>', `only services in this observed state (${SERVICE_STATES.join(', ')})`)
      .option('--json', 'print JSON'),
  ).action(async (opts: JsonOpt & { host?: string; state?: string }) => {
    const states = [...SERVICE_STATES, 'pending'];
    if (opts.state !== undefined && !states.includes(opts.state)) {
      throw new CliExit(EXIT_USAGE, `--state must be one of ${states.join(', ')}`);
    }
    const onlyPending = opts.state === 'pending';
    const query = new URLSearchParams();
    if (opts.host !== undefined) query.set('host', opts.host);
    if (opts.state !== undefined && !onlyPending) query.set('state', opts.state);
    const admin = await adminClientFor(opts);
    const qs = query.size > 0 ? `?${query.toString()}` : '';
    const res = await admin.get<ServiceListResponse>(`/v1/services${qs}`);
    const services = onlyPending ? [] : res.services;
    // Pending instances have no host: listed only when no host was asked for.
    const pending =
      opts.host === undefined && (opts.state === undefined || onlyPending) ? (res.pending ?? []) : [];
    const rows = [
      ...services.map((s) => ({ ...s })),
      ...pending.map((p) => ({
        service: p.service,
        host: '-',
        desired: 'running',
        observed: 'pending',
        restarts: 0,
        lastError: p.reason,
        updatedAt: p.since,
      })),
    ];
    io.out(
      opts.json
        ? renderJson(rows)
        : renderTable(
            [
              'service',
              'host',
              'runtime',
              'image',
              'container',
              'desired',
              'observed',
              'restarts',
              'last error',
              'updated',
            ],
            rows.map((s) => [
              s.service,
              s.host,
              'runtime' in s ? (s.runtime ?? null) : null,
              'image' in s ? (s.image ?? null) : null,
              'containerId' in s ? shortContainerId(s.containerId) : null,
              s.desired,
              'escalated' in s && s.escalated !== undefined ? `${s.observed} (escalated)` : s.observed,
              s.restarts,
              'escalated' in s && s.escalated !== undefined ? s.escalated : s.lastError,
              s.updatedAt,
            ]),
          ),
    );
  });

  addAdminTargetOptions(
    controller
      .command('teardown')
      .description('stop and remove deployed services: all, one host, or one service')
      .option('--host <name>', "only this host's services")
      .option('--service <name>', 'only this service')
      .option('--yes', 'do not ask for confirmation')
      .option('--json', 'print JSON'),
  ).action(async (opts: JsonOpt & { host?: string; service?: string; yes?: boolean }) => {
    const what = [
      opts.service !== undefined ? `service ${opts.service}` : '',
      opts.host !== undefined ? `the services on ${opts.host}` : '',
    ]
      .filter(Boolean)
      .join(' of ');
    const scope = what || 'EVERY deployed service';
    if (!opts.yes) {
      if (!process.stdin.isTTY) {
        throw new CliExit(
          EXIT_USAGE,
          `refusing to tear down ${scope} without --yes (not an interactive terminal)`,
        );
      }
      const rl = createInterface({ input: process.stdin, output: process.stderr });
      const answer = await rl.question(`Tear down ${scope}? Type yes to confirm: `);
      rl.close();
      if (answer.trim() !== 'yes') throw new CliExit(EXIT_FAILURE, 'not confirmed; nothing was changed');
    }
    const body: ServiceTeardownRequest = {};
    if (opts.host !== undefined) body.host = opts.host;
    if (opts.service !== undefined) body.service = opts.service;
    const admin = await adminClientFor(opts);
    const res = await admin.post<ServiceTeardownResponse | ApprovalPending>('/v1/teardown', body);
    if (isApprovalPending(res)) {
      printApprovalPending(io, res, { what: `teardown of ${scope}`, json: opts.json });
      return;
    }
    if (opts.json) {
      io.out(renderJson(res));
    } else if (res.operationId === null) {
      io.out('nothing is deployed; nothing was changed\n');
    } else {
      io.out(
        renderTable(
          ['removed service', 'from host'],
          res.removed.map((r) => [r.service, r.host]),
        ),
      );
      io.out('\n');
      io.out(hostTable(res.hosts));
      io.out(`\noperation ${res.operationId}\n`);
    }
    failIfAnyHostFailed(res.hosts, res.operationId);
  });
}

import { createInterface } from 'node:readline/promises';
import type { ApprovalPending } from '../../protocol/approvals.js';
import type { Command } from 'commander';
import type {
  CheckResponse,
  DecommissionResponse,
  HostDetail,
  HostListResponse,
} from '../../protocol/admin-hosts.js';
import { HOST_STATUSES, MAX_HOST_PAGE_LIMIT } from '../../protocol/constants.js';
import type { HostClock, HostView } from '../../protocol/host.js';
import { adminClientFor, type AdminClient } from '../admin-client.js';
import { addAdminTargetOptions, type AdminTargetOptions } from '../controller-home.js';
import { CliExit, EXIT_FAILURE, EXIT_USAGE } from '../exit.js';
import { isApprovalPending, printApprovalPending } from './approval-pending.js';
import {
  jsonArrayWriter,
  renderJson,
  renderRecord,
  renderTable,
  shortContainerId,
  tableWriter,
  type Output,
} from '../output.js';

const FINGERPRINT_PREFIX = 12;
const labelsText = (labels: Record<string, string>): string =>
  Object.entries(labels)
    .map(([k, v]) => `${k}=${v}`)
    .join(',');
const short = (fp: string | null): string | null => (fp === null ? null : fp.slice(0, FINGERPRINT_PREFIX));

/** `decommissioned (wipe pending)`, `decommissioned (wiped)`, or the status alone. */
export function statusText(h: Pick<HostView, 'status' | 'wipe'>): string {
  return h.wipe ? `${h.status} (${h.wipe === 'pending' ? 'wipe pending' : 'wiped'})` : h.status;
}

function hostRows(hosts: readonly HostView[]) {
  return hosts.map((h) => [
    h.name,
    h.address,
    statusText(h),
    h.lastSeen,
    h.agentVersion,
    labelsText(h.labels),
    short(h.agentFingerprint),
    eligibilityText(h),
  ]);
}

/** `eligible`, `ineligible`, or `draining (until T)`; nothing for a decommissioned host. */
export function eligibilityText(
  h: Pick<HostView, 'eligibility' | 'drainDeadline' | 'status'>,
): string | null {
  if (h.status === 'decommissioned' || h.eligibility === undefined) return null;
  return h.eligibility === 'draining' && h.drainDeadline
    ? `draining (until ${h.drainDeadline})`
    : h.eligibility;
}

type JsonOpt = AdminTargetOptions & { json?: boolean };

/** Hosts the CLI asks for per page (the controller's largest). */
const CLI_HOST_PAGE_LIMIT = MAX_HOST_PAGE_LIMIT;

/**
 * The host list a page at a time, first to last, following `nextCursor`. Throws when the
 * controller hands back the cursor it was given (a walk that would never end).
 */
async function* hostPages(admin: AdminClient, status: string | undefined): AsyncGenerator<HostView[]> {
  let cursor: string | undefined;
  for (;;) {
    const query = new URLSearchParams({ limit: String(CLI_HOST_PAGE_LIMIT) });
    if (status !== undefined) query.set('status', status);
    if (cursor !== undefined) query.set('cursor', cursor);
    const page = await admin.get<HostListResponse>(`/v1/hosts?${query.toString()}`);
    yield page.hosts;
    if (page.nextCursor === null || page.nextCursor === undefined) return;
    if (page.nextCursor === cursor)
      throw new CliExit(EXIT_FAILURE, 'the controller returned the same page twice');
    cursor = page.nextCursor;
  }
}

/** `+50m 3s`, `-10m 0s`, `+850ms`: the sign says which way the agent's clock is off. */
export function offsetText(ms: number): string {
  const sign = ms < 0 ? '-' : '+';
  const abs = Math.abs(ms);
  if (abs < 1000) return `${sign}${abs}ms`;
  const s = Math.round(abs / 1000);
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const rest = s % 60;
  return `${sign}${h > 0 ? `${h}h ` : ''}${h > 0 || m > 0 ? `${m}m ` : ''}${rest}s`;
}

function clockText(clock: HostClock | null | undefined): string | null {
  if (!clock) return null;
  const way = clock.offsetMs < 0 ? 'behind' : 'ahead of';
  const text = `${offsetText(clock.offsetMs)} (agent ${way} the controller, measured ${clock.measuredAt})`;
  return clock.warning ? `${text}  WARNING: more than ${offsetText(clock.warnAfterMs).slice(1)} off` : text;
}

/** One line per host whose clock is past the bound, for stderr under a table. */
function clockWarnings(hosts: readonly HostView[]): string {
  return hosts
    .filter((h) => h.clock?.warning)
    .map(
      (h) =>
        `warning: ${h.name}: clock ${offsetText(h.clock?.offsetMs ?? 0)} off the controller's ` +
        `(bound ${offsetText(h.clock?.warnAfterMs ?? 0).slice(1)}); fix its time sync\n`,
    )
    .join('');
}

/**
 * The address a join came from, shown when it is not the one the worker claimed (the
 * controller dials the claimed one): a worker behind NAT, or one naming another machine.
 */
function joinSourceLine(detail: HostDetail): [string, string][] {
  const claimed = detail.host.address.replace(/^\[(.*)\]$/, '$1');
  if (detail.joinSource === null || detail.joinSource === claimed) return [];
  return [['join source', `${detail.joinSource} (differs from the claimed address ${detail.host.address})`]];
}

/** `corral controller hosts`, `host`, `decommission`, `check`. */
export function registerControllerHostCommands(controller: Command, io: Output): void {
  addAdminTargetOptions(
    controller
      .command('hosts')
      .description('list hosts: status, last seen, agent version, labels, fingerprint')
      .option('--status <status>', `only hosts in this status (${HOST_STATUSES.join(', ')})`)
      .option('--json', 'print JSON'),
  ).action(async (opts: JsonOpt & { status?: string }) => {
    if (opts.status !== undefined && !(HOST_STATUSES as readonly string[]).includes(opts.status)) {
      throw new CliExit(EXIT_USAGE, `--status must be one of ${HOST_STATUSES.join(', ')}`);
    }
    const admin = await adminClientFor(opts);
    const json = jsonArrayWriter();
    const table = tableWriter([
      'name',
      'address',
      'status',
      'last seen',
      'agent version',
      'labels',
      'fingerprint',
      'eligibility',
    ]);
    let first = true;
    for await (const hosts of hostPages(admin, opts.status)) {
      if (opts.json) io.out(json.items(hosts));
      else if (first || hosts.length > 0) io.out(table.rows(hostRows(hosts)));
      if (!opts.json) io.err(clockWarnings(hosts));
      first = false;
      await io.flush?.();
    }
    if (opts.json) io.out(json.end());
  });

  addAdminTargetOptions(
    controller
      .command('host')
      .description('show one host in full')
      .argument('<name>', 'host name')
      .option('--json', 'print JSON'),
  ).action(async (name: string, opts: JsonOpt) => {
    const admin = await adminClientFor(opts);
    const detail = await admin.get<HostDetail>(`/v1/hosts/${encodeURIComponent(name)}`);
    if (opts.json) {
      io.out(renderJson(detail));
      return;
    }
    const h = detail.host;
    const m = h.metrics;
    io.out(
      renderRecord([
        ['name', h.name],
        ['id', h.id],
        ['status', statusText(h)],
        ...(h.wipedAt ? [['wiped', h.wipedAt] as [string, string]] : []),
        ['address', h.address],
        ...joinSourceLine(detail),
        ['agent port', h.agentPort],
        ['updater port', h.updaterPort],
        ['sans', detail.sans.join(', ')],
        ['labels', labelsText(h.labels)],
        ['eligibility', eligibilityText(h)],
        ['enrolled', `${h.enrolledAt} (${detail.enrolledVia})`],
        ['bundle written', detail.bundleWrittenAt ?? 'not confirmed'],
        ['last seen', h.lastSeen],
        ['agent version', h.agentVersion],
        ['generation', h.generation],
        ['clock offset', clockText(h.clock)],
        ['agent fingerprint', h.agentFingerprint],
        ['updater fingerprint', h.updaterFingerprint],
        ['load', m ? `${m.load1} ${m.load5} ${m.load15}` : null],
        ['memory available', m ? `${m.memAvailableBytes} / ${m.memTotalBytes} bytes` : null],
        ['disk free', m ? `${m.diskFreeBytes} / ${m.diskTotalBytes} bytes` : null],
        ['decommissioned', h.decommissionedAt],
      ]),
    );
    if (!opts.json) io.err(clockWarnings([h]));
    if (detail.services.length > 0) {
      io.out('\n');
      io.out(
        renderTable(
          ['service', 'state', 'runtime', 'image', 'container', 'restarts', 'pid', 'since', 'last error'],
          detail.services.map((s) => [
            s.name,
            s.state,
            s.runtime ?? null,
            s.image ?? null,
            shortContainerId(s.containerId),
            s.restarts,
            s.pid,
            s.since,
            s.lastError,
          ]),
        ),
      );
    }
    if (detail.recentEvents.length > 0) {
      io.out('\n');
      io.out(
        renderTable(
          ['event', 'time', 'service', 'generation', 'detail'],
          detail.recentEvents.map((e) => [e.type, e.time, e.service, e.generation, e.detail]),
        ),
      );
    }
  });

  addAdminTargetOptions(
    controller
      .command('decommission')
      .description("make the agent self-destruct, drop the host's pins and close its connections")
      .argument('<name>', 'host name')
      .option('--yes', 'do not ask for confirmation')
      .option('--json', 'print JSON'),
  ).action(async (name: string, opts: JsonOpt & { yes?: boolean }) => {
    if (!opts.yes) {
      if (!process.stdin.isTTY) {
        throw new CliExit(
          EXIT_USAGE,
          `refusing to decommission ${name} without --yes (not an interactive terminal)`,
        );
      }
      const rl = createInterface({ input: process.stdin, output: process.stderr });
      const answer = await rl.question(
        `Decommission ${name}? Its certificates stop working for good. Type the name to confirm: `,
      );
      rl.close();
      if (answer.trim() !== name) throw new CliExit(EXIT_FAILURE, 'not confirmed; nothing was changed');
    }
    const admin = await adminClientFor(opts);
    const answer = await admin.post<DecommissionResponse | ApprovalPending>(
      `/v1/hosts/${encodeURIComponent(name)}/decommission`,
    );
    if (isApprovalPending(answer)) {
      printApprovalPending(io, answer, { what: `decommission of ${name}`, json: opts.json });
      return;
    }
    const res = answer;
    io.out(
      opts.json
        ? renderJson(res)
        : renderRecord([
            ['host', res.host.name],
            ['status', statusText(res.host)],
            [
              'self-destruct',
              res.selfDestruct.ok
                ? 'accepted by the agent'
                : `not confirmed (${res.selfDestruct.message ?? ''})`,
            ],
            ['connections closed', res.closedConnections],
          ]),
    );
  });

  addAdminTargetOptions(
    controller
      .command('check')
      .description("probe every host's agent over mutual TLS (pin checked) and show reachability")
      .option('--timeout <ms>', 'per-host timeout in ms', '5000')
      .option('--json', 'print JSON'),
  ).action(async (opts: JsonOpt & { timeout: string }) => {
    const timeoutMs = Number(opts.timeout);
    if (!Number.isInteger(timeoutMs) || timeoutMs < 100 || timeoutMs > 60_000) {
      throw new CliExit(EXIT_USAGE, '--timeout must be an integer between 100 and 60000');
    }
    const admin = await adminClientFor(opts);
    const { results } = await admin.post<CheckResponse>('/v1/check', { timeoutMs });
    io.out(
      opts.json
        ? renderJson(results)
        : renderTable(
            ['name', 'address', 'status', 'reachable', 'latency ms', 'agent version', 'error'],
            results.map((r) => [
              r.name,
              r.address,
              r.status,
              r.reachable ? 'yes' : 'no',
              r.latencyMs,
              r.agentVersion,
              r.error ? `${r.error.code}: ${r.error.message}` : null,
            ]),
          ),
    );
    const down = results.filter((r) => !r.reachable).length;
    if (down > 0) throw new CliExit(EXIT_FAILURE, `${down} of ${results.length} hosts did not answer`);
  });
}

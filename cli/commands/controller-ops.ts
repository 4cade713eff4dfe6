import { setTimeout as sleep } from 'node:timers/promises';
import type { Command } from 'commander';
import {
  MAX_OPERATION_LOG_PAGE,
  type OperationDetail,
  type OperationListResponse,
  type OperationLogEntry,
} from '../../protocol/operations.js';
import type { AdminClient } from '../admin-client.js';
import { adminClientFor } from '../admin-client.js';
import { addAdminTargetOptions, type AdminTargetOptions } from '../controller-home.js';
import { parseDurationMs } from '../duration.js';
import { CliExit, EXIT_FAILURE, EXIT_USAGE } from '../exit.js';
import { inline, renderJson, renderRecord, renderTable, type Output } from '../output.js';

type JsonOpt = AdminTargetOptions & { json?: boolean };

const FOLLOW_POLL_MS = 500;

/** One log entry as one line: the message may carry worker text (an agent's refusal), escaped. */
const logLine = (l: OperationLogEntry): string =>
  `${inline(l.time)}  ${inline(l.level).padEnd(5)}  ${l.host ? `[${inline(l.host)}] ` : ''}${inline(l.message)}\n`;

/** The operation with its log from `afterSeq` on, every page of it. */
async function fetchDetail(admin: AdminClient, id: string, afterSeq: number): Promise<OperationDetail> {
  const path = (after: number) => `/v1/ops/${encodeURIComponent(id)}?afterSeq=${after}`;
  const detail = await admin.get<OperationDetail>(path(afterSeq));
  let page = detail.log;
  while (page.length >= MAX_OPERATION_LOG_PAGE) {
    const last = page.at(-1);
    if (!last) break;
    page = (await admin.get<OperationDetail>(path(last.seq))).log;
    detail.log.push(...page);
  }
  return detail;
}

function renderDetail(d: OperationDetail): string {
  const op = d.operation;
  const s = op.summary;
  let text = renderRecord([
    ['operation', op.id],
    ['kind', op.kind],
    ['state', op.state],
    ['actor', op.actor],
    ['target', op.target],
    ['created', op.createdAt],
    ['finished', op.finishedAt],
    ['hosts', `${s.hosts} (${s.failedHosts} failed)`],
    ['services', s.services],
    ['removed', s.removed],
    ['reason', op.reason],
  ]);
  if (d.steps.length > 0) {
    text += '\n';
    text += renderTable(
      ['host', 'state', 'generation', 'services', 'detail', 'started', 'finished'],
      d.steps.map((st) => [
        st.host,
        st.state,
        st.generation,
        st.services,
        st.detail,
        st.startedAt,
        st.finishedAt,
      ]),
    );
  }
  return text;
}

/** `corral controller ops` and `ops show ID [--follow]`. */
export function registerControllerOpsCommands(controller: Command, io: Output): void {
  const ops = addAdminTargetOptions(
    controller
      .command('ops')
      .description('operations (deploys, teardowns), newest first; `ops show ID` for one')
      .option('--limit <n>', 'how many', '100')
      .option('--json', 'print JSON'),
  ).action(async (opts: JsonOpt & { limit: string }) => {
    const limit = Number(opts.limit);
    if (!Number.isInteger(limit) || limit < 1 || limit > 1000) {
      throw new CliExit(EXIT_USAGE, '--limit must be an integer between 1 and 1000');
    }
    const admin = await adminClientFor(opts);
    const { operations } = await admin.get<OperationListResponse>(`/v1/ops?limit=${limit}`);
    io.out(
      opts.json
        ? renderJson(operations)
        : renderTable(
            ['id', 'kind', 'state', 'actor', 'target', 'created', 'finished', 'hosts failed'],
            operations.map((o) => [
              o.id,
              o.kind,
              o.state,
              o.actor,
              o.target,
              o.createdAt,
              o.finishedAt,
              `${o.summary.failedHosts}/${o.summary.hosts}`,
            ]),
          ),
    );
  });

  addAdminTargetOptions(
    ops
      .command('show')
      .description('one operation: its per-host steps and its log')
      .argument('<id>', 'operation id')
      .option('--follow', 'print new log lines until the operation finishes; exit 1 unless it succeeded')
      .option('--timeout <duration>', 'with --follow: give up after this long', '1h')
      .option('--json', 'print JSON'),
  ).action(async (id: string, opts: JsonOpt & { follow?: boolean; timeout: string }) => {
    let timeoutMs: number;
    try {
      timeoutMs = parseDurationMs(opts.timeout);
    } catch (e: unknown) {
      throw new CliExit(EXIT_USAGE, `--timeout: ${e instanceof Error ? e.message : String(e)}`);
    }
    const admin = await adminClientFor({ ...ops.opts<AdminTargetOptions>(), ...opts });
    let detail = await fetchDetail(admin, id, 0);
    if (!opts.follow) {
      if (opts.json) io.out(renderJson(detail));
      else {
        io.out(renderDetail(detail));
        if (detail.log.length > 0) io.out(`\n${detail.log.map(logLine).join('')}`);
      }
      return;
    }
    const all = [...detail.log];
    if (!opts.json) for (const l of detail.log) io.out(logLine(l));
    const deadline = Date.now() + timeoutMs;
    while (detail.operation.state === 'running') {
      if (Date.now() > deadline)
        throw new CliExit(EXIT_FAILURE, `operation ${id} still running after ${opts.timeout}`);
      await sleep(FOLLOW_POLL_MS);
      detail = await fetchDetail(admin, id, all.at(-1)?.seq ?? 0);
      all.push(...detail.log);
      if (!opts.json) for (const l of detail.log) io.out(logLine(l));
    }
    if (opts.json) io.out(renderJson({ ...detail, log: all }));
    else io.out(`\n${renderDetail(detail)}`);
    if (detail.operation.state !== 'succeeded') {
      throw new CliExit(EXIT_FAILURE, `operation ${id} ${detail.operation.state}`);
    }
  });
}

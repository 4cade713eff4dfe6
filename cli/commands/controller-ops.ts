import { setTimeout as sleep } from 'node:timers/promises';
import type { Command } from 'commander';
import {
  MAX_OPERATION_LOG_PAGE,
  type OperationDetail,
  type OperationListResponse,
  type OperationLogEntry,
  type OperationView,
} from '../../protocol/operations.js';
import { opCancelPath, opResumePath } from '../../protocol/rollout.js';
import type { AdminClient } from '../admin-client.js';
import { adminClientFor } from '../admin-client.js';
import { addAdminTargetOptions, type AdminTargetOptions } from '../controller-home.js';
import { parseDurationMs } from '../duration.js';
import { CliExit, EXIT_FAILURE, EXIT_USAGE } from '../exit.js';
import { inline, renderJson, renderRecord, renderTable, type Output } from '../output.js';

type JsonOpt = AdminTargetOptions & { json?: boolean };

const FOLLOW_POLL_MS = 500;
/** A resumed rollout answers once its last host is done (updates take minutes per batch). */
const RESUME_TIMEOUT_MS = 6 * 60 * 60_000;

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
      .description(
        'operations (deploys, updates, teardowns, scheduler changes), newest first; `ops show ID` for one, `ops resume|cancel ID` for a halted rollout',
      )
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

  addAdminTargetOptions(
    ops
      .command('resume')
      .description(
        'continue a halted rollout with the hosts it left untouched; exit 1 unless it then succeeds',
      )
      .argument('<id>', 'operation id')
      .option('--json', 'print JSON'),
  ).action(async (id: string, opts: JsonOpt) => {
    const admin = await adminClientFor({ ...ops.opts<AdminTargetOptions>(), ...opts });
    const seen = await fetchDetail(admin, id, 0);
    let afterSeq = seen.log.at(-1)?.seq ?? 0;
    const stop = new AbortController();
    // Progress: the new log lines on stderr while the controller runs the rest.
    const progress = opts.json
      ? undefined
      : (async () => {
          for (let i = 0; i < 1_000_000 && !stop.signal.aborted; i++) {
            await sleep(FOLLOW_POLL_MS, undefined, { signal: stop.signal }).catch(() => undefined /* done */);
            try {
              const d = await fetchDetail(admin, id, afterSeq);
              for (const l of d.log) io.err(logLine(l));
              afterSeq = d.log.at(-1)?.seq ?? afterSeq;
            } catch (e: unknown) {
              void e; // progress is best effort; the resume's own answer decides
            }
          }
        })();
    let op: OperationView;
    try {
      op = await admin.post<OperationView>(opResumePath(id), {}, RESUME_TIMEOUT_MS);
    } finally {
      stop.abort();
      await progress;
    }
    const detail = await fetchDetail(admin, id, afterSeq);
    if (opts.json) io.out(renderJson({ ...detail, operation: op }));
    else {
      for (const l of detail.log) io.err(logLine(l));
      io.out(renderDetail(detail));
    }
    if (op.state !== 'succeeded')
      throw new CliExit(EXIT_FAILURE, `operation ${id} ${op.state}${op.reason ? `: ${op.reason}` : ''}`);
  });

  addAdminTargetOptions(
    ops
      .command('cancel')
      .description('end a halted rollout: the hosts it left untouched stay as they are')
      .argument('<id>', 'operation id')
      .option('--json', 'print JSON'),
  ).action(async (id: string, opts: JsonOpt) => {
    const admin = await adminClientFor({ ...ops.opts<AdminTargetOptions>(), ...opts });
    const op = await admin.post<OperationView>(opCancelPath(id), {});
    if (opts.json) io.out(renderJson(op));
    else io.out(renderDetail(await fetchDetail(admin, id, Number.MAX_SAFE_INTEGER)));
  });
}

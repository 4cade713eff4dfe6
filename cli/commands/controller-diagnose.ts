import type { Command } from 'commander';
import type { AdminDiagnoseResponse } from '../../protocol/admin-diagnose.js';
import { DIAGNOSTIC_KINDS, MAX_LOG_TAIL_LINES, type DiagnosticsResponse } from '../../protocol/agent-api.js';
import { ErrorCode } from '../../protocol/errors.js';
import { adminClientFor } from '../admin-client.js';
import { addAdminTargetOptions, type AdminTargetOptions } from '../controller-home.js';
import { CliExit, EXIT_USAGE } from '../exit.js';
import { inline, renderJson, renderRecord, renderTable, type Output } from '../output.js';

type DiagnoseOpts = AdminTargetOptions & { service?: string; lines?: string; json?: boolean };

const bytes = (n: number): string => `${n} bytes`;

/** A diagnostic's result as tables, records and (escaped) log lines. */
export function renderDiagnostic(host: string, r: DiagnosticsResponse): string {
  switch (r.kind) {
    case 'disk':
      return renderTable(
        ['path', 'total bytes', 'free bytes', 'available bytes'],
        r.filesystems.map((f) => [f.path, f.totalBytes, f.freeBytes, f.availableBytes]),
      );
    case 'memory':
      return renderRecord([
        ['host', host],
        ['memory total', bytes(r.totalBytes)],
        ['memory available', bytes(r.availableBytes)],
        ['swap total', bytes(r.swapTotalBytes)],
        ['swap free', bytes(r.swapFreeBytes)],
        ['agent resident', bytes(r.agentRssBytes)],
      ]);
    case 'processes':
      return (
        `${inline(host)}: ${r.total} processes; the ${r.top.length} largest by resident memory:\n` +
        renderTable(
          ['pid', 'command', 'state', 'rss bytes', 'service'],
          r.top.map((p) => [p.pid, p.command, p.state, p.rssBytes, p.service]),
        )
      );
    case 'log-tail': {
      const lines = [
        ...r.stdout.map((l) => `stdout | ${inline(l)}\n`),
        ...r.stderr.map((l) => `stderr | ${inline(l)}\n`),
      ];
      return lines.length > 0
        ? lines.join('')
        : `${inline(r.service)} on ${inline(host)} has written nothing\n`;
    }
  }
}

/** `corral controller diagnose HOST disk|memory|processes|log-tail [--service S] [--json]`. */
export function registerControllerDiagnoseCommand(controller: Command, io: Output): void {
  addAdminTargetOptions(
    controller
      .command('diagnose')
      .description(
        `ask a host's agent for one diagnostic (${DIAGNOSTIC_KINDS.join(', ')}), over its pinned connection; audited`,
      )
      .argument('<host>', 'host name')
      .argument('<kind>', DIAGNOSTIC_KINDS.join('|'))
      .option('--service <name>', 'for log-tail: the service whose stdout and stderr to show')
      .option('--lines <n>', `for log-tail: lines of each stream (1-${MAX_LOG_TAIL_LINES}; default 100)`)
      .option('--json', 'print JSON'),
  ).action(async (host: string, kind: string, opts: DiagnoseOpts) => {
    if (!(DIAGNOSTIC_KINDS as readonly string[]).includes(kind)) {
      throw new CliExit(
        EXIT_USAGE,
        `diagnostic ${JSON.stringify(kind)} is not allowed; the agent runs only ${DIAGNOSTIC_KINDS.join(', ')} (${ErrorCode.DIAGNOSTIC_NOT_ALLOWED})`,
      );
    }
    if (kind === 'log-tail' && opts.service === undefined)
      throw new CliExit(EXIT_USAGE, 'log-tail needs --service');
    if (kind !== 'log-tail' && (opts.service !== undefined || opts.lines !== undefined)) {
      throw new CliExit(EXIT_USAGE, '--service and --lines are for log-tail only');
    }
    let lines: number | undefined;
    if (opts.lines !== undefined) {
      lines = Number(opts.lines);
      if (!Number.isInteger(lines) || lines < 1 || lines > MAX_LOG_TAIL_LINES) {
        throw new CliExit(EXIT_USAGE, `--lines must be an integer between 1 and ${MAX_LOG_TAIL_LINES}`);
      }
    }
    const admin = await adminClientFor(opts);
    const res = await admin.post<AdminDiagnoseResponse>(`/v1/hosts/${encodeURIComponent(host)}/diagnose`, {
      kind,
      ...(opts.service !== undefined && { service: opts.service }),
      ...(lines !== undefined && { lines }),
    });
    io.out(opts.json ? renderJson(res) : renderDiagnostic(res.host, res.result));
  });
}

import type { Command } from 'commander';
import type { EligibilityResponse } from '../../protocol/admin-eligibility.js';
import type { ApprovalPending } from '../../protocol/approvals.js';
import { adminClientFor } from '../admin-client.js';
import { addAdminTargetOptions, type AdminTargetOptions } from '../controller-home.js';
import { parseDurationMs } from '../duration.js';
import { CliExit, EXIT_USAGE } from '../exit.js';
import { collectFlag, parseLabelFlags } from '../label-flags.js';
import { renderJson, renderRecord, renderTable, type Output } from '../output.js';

type JsonOpt = AdminTargetOptions & { json?: boolean };

const hostPath = (name: string, verb: string): string => `/v1/hosts/${encodeURIComponent(name)}/${verb}`;

/** The answer as a record, then the instances that move (or would, with --dry-run). */
function printChange(io: Output, res: EligibilityResponse, json: boolean | undefined): void {
  if (json) {
    io.out(renderJson(res));
    return;
  }
  io.out(
    renderRecord([
      ['host', res.host],
      ['eligibility', res.eligibility],
      ['drain deadline', res.drainDeadline],
      [
        'labels',
        Object.entries(res.labels)
          .map(([k, v]) => `${k}=${v}`)
          .join(','),
      ],
      ...(res.dryRun ? [['dry run', 'yes: nothing was changed'] as [string, string]] : []),
    ]),
  );
  const rows = [
    ...res.changes.plan.map((p) => [p.service, p.change, p.previousHost, p.host]),
    ...res.changes.removed.map((r) => [r.service, 'removed', r.host, null]),
  ];
  io.out('\n');
  io.out(rows.length === 0 ? 'no service moves\n' : renderTable(['service', 'change', 'from', 'to'], rows));
}

/** `corral controller drain`, `eligibility`, `label`. */
export function registerControllerEligibilityCommands(controller: Command, io: Output): void {
  addAdminTargetOptions(
    controller
      .command('drain')
      .description(
        'make a host ineligible and move its services away: each is stopped there once it runs elsewhere, or at the deadline',
      )
      .argument('<host>', 'host name')
      .option('--deadline <duration>', 'stop what has not moved by then anyway (30s, 5m, 1h)', '5m')
      .option('--json', 'print JSON'),
  ).action(async (name: string, opts: JsonOpt & { deadline: string }) => {
    let deadlineMs: number;
    try {
      deadlineMs = parseDurationMs(opts.deadline);
    } catch {
      // CORRAL_ERR_VALIDATION from the parser: a usage error here.
      throw new CliExit(EXIT_USAGE, `--deadline: expected a duration like 30s or 5m, got ${opts.deadline}`);
    }
    const admin = await adminClientFor(opts);
    const answer = await admin.post<EligibilityResponse | ApprovalPending>(hostPath(name, 'drain'), {
      deadlineMs,
    });
    if ('approval' in answer) {
      io.out(
        opts.json
          ? renderJson(answer)
          : renderRecord([
              ['approval', answer.approval.id],
              ['state', answer.approval.state],
              ['needs', `${answer.approval.required} approval(s) by another operator`],
              ['expires', answer.approval.expiresAt],
            ]),
      );
      io.err(`corral: drain of ${name} waits for approval; another operator runs: ${answer.approveWith}\n`);
      return;
    }
    printChange(io, answer, opts.json);
  });

  addAdminTargetOptions(
    controller
      .command('eligibility')
      .description(
        'on: the host takes new services again (ends a drain); off: it takes none and keeps its own',
      )
      .argument('<host>', 'host name')
      .argument('<on|off>', 'on or off')
      .option('--json', 'print JSON'),
  ).action(async (name: string, value: string, opts: JsonOpt) => {
    if (value !== 'on' && value !== 'off') throw new CliExit(EXIT_USAGE, `expected on or off, got ${value}`);
    const admin = await adminClientFor(opts);
    const res = await admin.post<EligibilityResponse>(hostPath(name, 'eligibility'), {
      eligible: value === 'on',
    });
    printChange(io, res, opts.json);
  });

  addAdminTargetOptions(
    controller
      .command('label')
      .description("set or remove a host's labels; services whose placement no longer fits move")
      .argument('<host>', 'host name')
      .argument('[labels...]', 'key=value labels to set')
      .option('--remove <key>', 'remove a label (repeatable)', collectFlag, [])
      .option('--dry-run', 'show what would move; change nothing')
      .option('--json', 'print JSON'),
  ).action(async (name: string, pairs: string[], opts: JsonOpt & { remove: string[]; dryRun?: boolean }) => {
    const set = parseLabelFlags(pairs, 'label');
    if (pairs.length === 0 && opts.remove.length === 0) {
      throw new CliExit(EXIT_USAGE, 'give labels to set (key=value) or --remove key');
    }
    const admin = await adminClientFor(opts);
    const res = await admin.post<EligibilityResponse>(hostPath(name, 'labels'), {
      set,
      remove: opts.remove,
      dryRun: opts.dryRun ?? false,
    });
    printChange(io, res, opts.json);
  });
}

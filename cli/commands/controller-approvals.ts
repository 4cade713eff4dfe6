import type { Command } from 'commander';
import type { ApprovalListResponse, ApprovalView } from '../../protocol/approvals.js';
import { adminClientFor } from '../admin-client.js';
import { addAdminTargetOptions, type AdminTargetOptions } from '../controller-home.js';
import { renderJson, renderRecord, renderTable, type Output } from '../output.js';

type JsonOpt = AdminTargetOptions & { json?: boolean };

function record(a: ApprovalView): string {
  return renderRecord([
    ['id', a.id],
    ['action', a.action],
    ['target', a.target],
    ['state', a.state],
    ['requester', a.requester],
    [
      'approvals',
      `${a.approvers.length}/${a.required}${a.approvers.length > 0 ? ` (${a.approvers.join(', ')})` : ''}`,
    ],
    ['created', a.createdAt],
    ['expires', a.expiresAt],
    ['decided', a.decidedAt],
    ['reason', a.reason],
  ]);
}

/** `corral controller approvals list|show|approve|reject|cancel`. */
export function registerControllerApprovalCommands(controller: Command, io: Output): void {
  const approvals = controller
    .command('approvals')
    .description('requests waiting for other operators to approve them');
  const show = (opts: JsonOpt, a: ApprovalView) => io.out(opts.json ? renderJson(a) : record(a));

  addAdminTargetOptions(
    approvals.command('list').description('the newest 1,000 requests').option('--json', 'print JSON'),
  ).action(async (opts: JsonOpt) => {
    const { approvals: all } = await (await adminClientFor(opts)).get<ApprovalListResponse>('/v1/approvals');
    io.out(
      opts.json
        ? renderJson(all)
        : renderTable(
            ['id', 'action', 'target', 'state', 'requester', 'approvals', 'expires'],
            all.map((a) => [
              a.id,
              a.action,
              a.target,
              a.state,
              a.requester,
              `${a.approvers.length}/${a.required}`,
              a.expiresAt,
            ]),
          ),
    );
  });
  addAdminTargetOptions(
    approvals
      .command('show')
      .argument('<id>')
      .description('one request in full')
      .option('--json', 'print JSON'),
  ).action(async (id: string, opts: JsonOpt) =>
    show(
      opts,
      await (await adminClientFor(opts)).get<ApprovalView>(`/v1/approvals/${encodeURIComponent(id)}`),
    ),
  );
  addAdminTargetOptions(
    approvals
      .command('approve')
      .argument('<id>')
      .description('approve (not your own); at the count needed it runs as the requester')
      .option('--json', 'print JSON'),
  ).action(async (id: string, opts: JsonOpt) =>
    show(
      opts,
      await (
        await adminClientFor(opts)
      ).post<ApprovalView>(`/v1/approvals/${encodeURIComponent(id)}/approve`),
    ),
  );
  addAdminTargetOptions(
    approvals
      .command('reject')
      .argument('<id>')
      .description('reject a pending request')
      .option('--reason <text>', 'why')
      .option('--json', 'print JSON'),
  ).action(async (id: string, opts: JsonOpt & { reason?: string }) =>
    show(
      opts,
      await (
        await adminClientFor(opts)
      ).post<ApprovalView>(
        `/v1/approvals/${encodeURIComponent(id)}/reject`,
        opts.reason !== undefined ? { reason: opts.reason } : {},
      ),
    ),
  );
  addAdminTargetOptions(
    approvals
      .command('cancel')
      .argument('<id>')
      .description('withdraw your own pending request')
      .option('--json', 'print JSON'),
  ).action(async (id: string, opts: JsonOpt) =>
    show(
      opts,
      await (await adminClientFor(opts)).post<ApprovalView>(`/v1/approvals/${encodeURIComponent(id)}/cancel`),
    ),
  );
}

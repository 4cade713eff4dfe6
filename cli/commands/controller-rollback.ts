import type { Command } from 'commander';
import { adminRollbackPath, type AdminRollbackResponse } from '../../protocol/admin-update.js';
import type { ApprovalPending } from '../../protocol/approvals.js';
import { adminClientFor } from '../admin-client.js';
import { addAdminTargetOptions, type AdminTargetOptions } from '../controller-home.js';
import { CliExit, EXIT_FAILURE } from '../exit.js';
import { LONG_REQUEST_TIMEOUT_MS } from '../follow-operation.js';
import { renderJson, renderTable, type Output } from '../output.js';
import { isApprovalPending, printApprovalPending } from './approval-pending.js';

type JsonOpt = AdminTargetOptions & { json?: boolean };

/**
 * `corral controller rollback HOST`: the host's updater puts its previous release back. With
 * `update` approvals it prints the pending request (202) and how another operator approves it.
 */
export function registerControllerRollbackCommand(controller: Command, io: Output): void {
  addAdminTargetOptions(
    controller
      .command('rollback')
      .description("put a host's previous release back (through its updater), recorded as an operation")
      .argument('<host>', 'host name')
      .option('--json', 'print JSON'),
  ).action(async (host: string, opts: JsonOpt) => {
    const admin = await adminClientFor(opts);
    const res = await admin.post<AdminRollbackResponse | ApprovalPending>(
      adminRollbackPath(host),
      {},
      LONG_REQUEST_TIMEOUT_MS,
    );
    if (isApprovalPending(res)) {
      printApprovalPending(io, res, { what: `rollback of ${host}`, json: opts.json });
      return;
    }
    io.out(
      opts.json
        ? renderJson(res)
        : renderTable(
            ['host', 'outcome', 'current', 'from', 'operation', 'reason'],
            [[res.host, res.outcome, res.current, res.from, res.operationId, res.reason]],
          ),
    );
    if (res.outcome !== 'rolled-back') {
      throw new CliExit(EXIT_FAILURE, `rollback of ${host} failed: ${res.reason ?? 'no reason given'}`);
    }
  });
}

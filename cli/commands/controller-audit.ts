import type { Command } from 'commander';
import type { AuditEntry, AuditListResponse, AuditVerification } from '../../protocol/admin-audit.js';
import { adminClientFor } from '../admin-client.js';
import { addAdminTargetOptions, type AdminTargetOptions } from '../controller-home.js';
import { CliExit, EXIT_FAILURE } from '../exit.js';
import { renderJson, renderRecord, renderTable, type Output } from '../output.js';

const PAGE = 1000;
const HASH_PREFIX = 12;

/** `corral controller audit [--verify]`: the hash-chained audit log. */
export function registerControllerAuditCommand(controller: Command, io: Output): void {
  addAdminTargetOptions(
    controller
      .command('audit')
      .description('list the audit log, or verify its hash chain (--verify)')
      .option('--verify', 'walk the whole chain and name the first broken entry')
      .option('--json', 'print JSON'),
  ).action(async (opts: AdminTargetOptions & { verify?: boolean; json?: boolean }) => {
    const admin = await adminClientFor(opts);
    if (opts.verify) {
      const v = await admin.get<AuditVerification>('/v1/audit/verify');
      if (opts.json) io.out(renderJson(v));
      else
        io.out(
          renderRecord([
            ['chain', v.ok ? 'intact' : 'BROKEN'],
            ['entries checked', v.checked],
            ['head hash', v.headHash],
            [
              'first broken entry',
              v.firstBroken
                ? `${v.firstBroken.seq} (${v.firstBroken.reason}): ${v.firstBroken.message}`
                : null,
            ],
          ]),
        );
      if (!v.ok) throw new CliExit(EXIT_FAILURE, `audit chain broken at entry ${v.firstBroken?.seq ?? '?'}`);
      return;
    }
    const entries: AuditEntry[] = [];
    for (let after = 0; ;) {
      const page = await admin.get<AuditListResponse>(`/v1/audit?after=${after}&limit=${PAGE}`);
      entries.push(...page.entries);
      const last = page.entries.at(-1);
      if (!last || page.entries.length < PAGE) break;
      after = last.seq;
    }
    io.out(
      opts.json
        ? renderJson(entries)
        : renderTable(
            ['seq', 'time', 'actor', 'action', 'target', 'hash'],
            entries.map((e) => [e.seq, e.time, e.actor, e.action, e.target, e.hash.slice(0, HASH_PREFIX)]),
          ),
    );
  });
}

import type { ApprovalPending } from '../../protocol/approvals.js';
import { renderJson, renderRecord, type Output } from '../output.js';

/** Whether an admin answer is a request waiting for approval (`202`) rather than the action's own. */
export function isApprovalPending(answer: unknown): answer is ApprovalPending {
  return typeof answer === 'object' && answer !== null && 'approval' in answer && 'approveWith' in answer;
}

/**
 * Prints a request that waits for approval: the request (stdout, JSON with `json`) and how
 * another operator approves it (stderr). `rerun`: the requester runs the same command again
 * once approved (operator create and rotate, whose secret is shown to them only).
 */
export function printApprovalPending(
  io: Output,
  answer: ApprovalPending,
  o: { readonly what: string; readonly json: boolean | undefined; readonly rerun?: boolean },
): void {
  const a = answer.approval;
  io.out(
    o.json
      ? renderJson(answer)
      : renderRecord([
          ['approval', a.id],
          ['state', a.state],
          ['target', a.target],
          ['needs', `${a.required} approval(s) by another operator`],
          ['expires', a.expiresAt],
        ]),
  );
  io.err(`corral: ${o.what} waits for approval; another operator runs: ${answer.approveWith}\n`);
  if (o.rerun) io.err(`corral: once it is approved, run this same command again to carry it out\n`);
}

import { ApprovedSchedulerPass } from '../../protocol/approvals.js';
import { parseWith } from '../../protocol/validate.js';
import type { Deployer } from '../deploy/deployer.js';
import { approvalOf, type SchedulerApprovals } from '../deploy/scheduler-actions.js';
import { CONTROLLER_REQUESTER, type ApprovalStore } from './approval-store.js';

/**
 * The scheduler's side of approvals: its reschedule and heal raise requests as the
 * controller, a rejected target is not asked again (until the situation changes), and a
 * request whose cause went away is cancelled as resolved.
 */
export function schedulerApprovals(store: ApprovalStore): SchedulerApprovals {
  return {
    required: (action) => store.required(approvalOf(action)) > 0,
    async raise(action, target) {
      await store.request(approvalOf(action), target, { target }, CONTROLLER_REQUESTER, {
        unlessRejected: true,
      });
    },
    async resolve(action, stillNeeded) {
      await store.cancelResolved(approvalOf(action), stillNeeded);
    },
  };
}

/** An approved reschedule or heal runs as the controller's pass, if the fleet still needs it. */
export function registerSchedulerExecutors(
  store: ApprovalStore,
  deployer: Pick<Deployer, 'reconcile'>,
): void {
  for (const action of ['reschedule', 'heal'] as const) {
    store.register(action, {
      run: async (body, _actor, approval) =>
        deployer.reconcile({
          approved: {
            action,
            target: parseWith(ApprovedSchedulerPass, body, `approved ${action}`).target,
            approvers: approval.approvers,
          },
        }),
    });
  }
}

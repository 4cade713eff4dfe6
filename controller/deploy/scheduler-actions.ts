import type { HostSet } from './desired-state.js';

/**
 * What the controller changes on its own, without an operator's command, by name. Every such
 * change is one of these, recorded as an operation of that kind (actor `controller`) and in
 * the audit log. With `approvals: { reschedule: N }` (or `heal`) a pass that would run one raises
 * a request as the controller instead (SchedulerApprovals) and runs it only once approved.
 *
 * - `reschedule`: placement changed (pending instances placed, instances moved off a lost or
 *   decommissioned host, an every-host service reaching a new host): the changed sets go out.
 * - `heal`: nothing moved, but online hosts have not accepted their current set (the dispatch
 *   failed, or the host was away when it changed): they get it again.
 * - `retry`: nothing else to do, but services their agent gave up on are due another try
 *   (failed-retries.ts): their hosts get their sets again under a new generation.
 */
export const SCHEDULER_ACTIONS = ['reschedule', 'heal', 'retry'] as const;
export type SchedulerAction = (typeof SCHEDULER_ACTIONS)[number];

/**
 * The approval an action waits for: a retry of a failed service is the controller healing the
 * fleet, so `approvals: { heal: N }` covers both.
 */
export type SchedulerApproval = 'reschedule' | 'heal';
export function approvalOf(action: SchedulerAction): SchedulerApproval {
  return action === 'retry' ? 'heal' : action;
}

/** The actor the controller's own operations and audit entries carry. */
export const SCHEDULER_ACTOR = 'controller';

/** The action for a placement pass, or null when there is nothing to do. */
export function decide(all: readonly HostSet[], sendable: readonly HostSet[]): SchedulerAction | null {
  if (all.some((s) => s.changed)) return 'reschedule';
  return sendable.length > 0 ? 'heal' : null;
}

/**
 * The approvals the scheduler's own actions may wait for. The controller is the requester;
 * a request whose cause went away before anyone approved it is cancelled as resolved.
 */
export interface SchedulerApprovals {
  /** Whether `action` waits for operators' approval. */
  required(action: SchedulerAction): boolean;
  /** Raises the controller's request for this action and target, or finds the pending one. */
  raise(action: SchedulerAction, target: string): Promise<void>;
  /** Cancels, as resolved, the controller's pending requests of `action` but the one for `stillNeeded`. */
  resolve(action: SchedulerAction, stillNeeded: string | null): Promise<void>;
}

/** Targets longer than this name their hosts by count and digest instead. */
const MAX_TARGET_CHARS = 200;

/**
 * What a scheduler action is about, for its approval: the hosts whose sets it changes (a
 * reschedule) or re-sends (a heal), sorted; the same situation gives the same target.
 */
export function schedulerTarget(hostNames: readonly string[], digest: (text: string) => string): string {
  const names = [...hostNames].sort();
  const text = `${names.length} hosts: ${names.join(',')}`;
  return text.length <= MAX_TARGET_CHARS ? text : `${names.length} hosts (${digest(names.join(','))})`;
}

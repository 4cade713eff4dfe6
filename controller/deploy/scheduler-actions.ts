import type { HostSet } from './desired-state.js';

/**
 * What the controller changes on its own, without an operator's command, by name. Every such
 * change is one of these, recorded as an operation of that kind (actor `controller`) and in
 * the audit log; an approval step for them belongs here, in front of `decide`.
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

/** The actor the controller's own operations and audit entries carry. */
export const SCHEDULER_ACTOR = 'controller';

/** The action for a placement pass, or null when there is nothing to do. */
export function decide(all: readonly HostSet[], sendable: readonly HostSet[]): SchedulerAction | null {
  if (all.some((s) => s.changed)) return 'reschedule';
  return sendable.length > 0 ? 'heal' : null;
}

import type { ApprovalAction, ApprovalPending } from '../../protocol/approvals.js';
import type { Socket } from 'node:net';
import type { ApprovalStore } from './approval-store.js';

/** One operator request for an action that may need approval. */
export interface GateRequest {
  readonly action: ApprovalAction;
  /** What the action is about, as approvals list it; same action and target: same request. */
  readonly target: string;
  /** JSON that the action's registered executor runs once approved. */
  readonly body: unknown;
  /** The requester: the approved request runs as their operation. */
  readonly actor: string;
  /** `update` only: whether the push goes to every host (see `updateAllOnly`). */
  readonly all?: boolean;
  /** The connection the request came on (left open by an operator revocation it runs). */
  readonly socket?: Socket | undefined;
}

/** What a gated request came to: it ran (now, or an approved one claimed), or it waits. */
export type Gated<T> = { readonly ran: T } | { readonly pending: ApprovalPending; readonly created: boolean };

export interface ApprovalGate {
  readonly store: ApprovalStore;
  /** Approvals this request needs (0: it runs at once). */
  required(action: ApprovalAction, facts?: { readonly all?: boolean }): number;
  /**
   * Runs `now` when the request needs no approval. Otherwise, for an action its requester
   * runs (operators create and rotate), runs the approved request they hold for it and gives
   * its answer; else records the request, or finds the pending one for the same action and
   * target, and gives that (the route answers it as `202`).
   */
  pass<T>(request: GateRequest, now: () => Promise<T>): Promise<Gated<T>>;
}

/** The command that approves a request, as a 202 answer names it. */
export const approveCommand = (id: string): string => `corral controller approvals approve ${id}`;

/**
 * The one gate every route with a destructive action goes through (decommission, teardown,
 * update and rollback, operators, drain). `updateAllOnly`: an `update` needs approval only when it pushes
 * to all hosts.
 */
export function createApprovalGate(
  store: ApprovalStore,
  o: { readonly updateAllOnly?: boolean | undefined } = {},
): ApprovalGate {
  const required = (action: ApprovalAction, facts: { readonly all?: boolean } = {}): number =>
    action === 'update' && o.updateAllOnly === true && facts.all !== true ? 0 : store.required(action);
  return {
    store,
    required,
    async pass<T>(request: GateRequest, now: () => Promise<T>): Promise<Gated<T>> {
      if (required(request.action, { all: request.all ?? false }) === 0) return { ran: await now() };
      const claimed = await store.claim(request.action, request.target, request.body, request.actor, {
        socket: request.socket,
      });
      if (claimed) return { ran: claimed.result as T };
      const { approval, created } = await store.request(
        request.action,
        request.target,
        request.body,
        request.actor,
      );
      return { pending: { approval, approveWith: approveCommand(approval.id) }, created };
    },
  };
}

/** A route's answer for a gated request: its own body, or `202` with the pending approval. */
export function gatedAnswer<T>(
  reply: { code(statusCode: number): unknown },
  gated: Gated<T>,
): T | ApprovalPending {
  if ('ran' in gated) return gated.ran;
  reply.code(202);
  return gated.pending;
}

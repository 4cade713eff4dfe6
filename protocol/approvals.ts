import { Type, type Static } from '@sinclair/typebox';
import { Reason, Timestamp } from './common.js';

/** Actions that can be made to wait for other operators' approval (controller config `approvals:`). */
export const APPROVAL_ACTIONS = [
  'decommission',
  'teardown',
  'update',
  'drain',
  'operators',
  'reschedule',
  'heal',
] as const;
export type ApprovalAction = (typeof APPROVAL_ACTIONS)[number];

export const APPROVAL_STATES = [
  'pending',
  'approved',
  'running',
  'completed',
  'failed',
  'rejected',
  'expired',
  'cancelled',
] as const;
export type ApprovalState = (typeof APPROVAL_STATES)[number];

/** Default time a pending request waits for its approvals, in ms (1 h). */
export const DEFAULT_APPROVAL_TTL_MS = 3600_000;

export const ApprovalId = Type.String({ pattern: '^apr-[0-9a-f]{16}$' });

export const ApprovalView = Type.Object(
  {
    id: ApprovalId,
    action: Type.Union(APPROVAL_ACTIONS.map((a) => Type.Literal(a))),
    target: Type.String({ maxLength: 300 }),
    state: Type.Union(APPROVAL_STATES.map((s) => Type.Literal(s))),
    requester: Type.String({ maxLength: 200 }),
    required: Type.Integer({ minimum: 1, maximum: 10 }),
    approvers: Type.Array(Type.String({ maxLength: 200 }), { maxItems: 10 }),
    createdAt: Timestamp,
    expiresAt: Timestamp,
    decidedAt: Type.Union([Timestamp, Type.Null()]),
    /** Why it was rejected, failed or cancelled. */
    reason: Type.Union([Reason, Type.Null()]),
    /** What the action answered once it ran (its own response body). */
    result: Type.Union([Type.Unknown(), Type.Null()]),
  },
  { additionalProperties: false },
);
export type ApprovalView = Static<typeof ApprovalView>;

/** What an action that needs approval answers instead of running: `202` with this. */
export const ApprovalPending = Type.Object(
  { approval: ApprovalView, approveWith: Type.String({ maxLength: 300 }) },
  { additionalProperties: false },
);
export type ApprovalPending = Static<typeof ApprovalPending>;

export const ApprovalListResponse = Type.Object(
  { approvals: Type.Array(ApprovalView, { maxItems: 10_000 }) },
  { additionalProperties: false },
);
export type ApprovalListResponse = Static<typeof ApprovalListResponse>;

export const ApprovalParams = Type.Object({ id: ApprovalId }, { additionalProperties: false });
export const ApprovalRejectRequest = Type.Object(
  { reason: Type.Optional(Reason) },
  { additionalProperties: false },
);

import { Type, type Static } from '@sinclair/typebox';
import { Name, Reason, Timestamp } from './common.js';
import { ServiceTeardownRequest } from './deployment.js';
import { OperatorCreateRequest } from './operators.js';
import { RolloutOptions } from './rollout.js';
import { Sha256Hex } from './updater-api.js';

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

/**
 * What an approval request keeps to run once approved (its `request` column), per action.
 * Read back with these schemas before it runs.
 */
export const ApprovedDecommission = Type.Object({ name: Name }, { additionalProperties: false });
export const ApprovedTeardown = ServiceTeardownRequest;
/** A release push; `file` is the upload the controller keeps until the request ends. */
export const ApprovedUpdate = Type.Object(
  {
    file: Type.String({ minLength: 1, maxLength: 4096 }),
    sha256: Sha256Hex,
    hosts: Type.Array(Name, { maxItems: 10_000 }),
    all: Type.Boolean(),
    includeSelf: Type.Boolean(),
    force: Type.Boolean(),
    rollout: Type.Optional(RolloutOptions),
  },
  { additionalProperties: false },
);
export type ApprovedUpdate = Static<typeof ApprovedUpdate>;
/** A host's rollback to its previous release: an `update` request too (same scope, same policy). */
export const ApprovedRollback = Type.Object({ rollback: Name }, { additionalProperties: false });
export type ApprovedRollback = Static<typeof ApprovedRollback>;
export const ApprovedOperatorChange = Type.Union([
  Type.Object(
    { change: Type.Literal('create'), create: OperatorCreateRequest },
    { additionalProperties: false },
  ),
  Type.Object(
    { change: Type.Union([Type.Literal('revoke'), Type.Literal('rotate')]), name: Name },
    { additionalProperties: false },
  ),
]);
export type ApprovedOperatorChange = Static<typeof ApprovedOperatorChange>;
/** A reschedule or heal the controller raised: the placement it would change, as it saw it. */
export const ApprovedSchedulerPass = Type.Object(
  { target: Type.String({ maxLength: 300 }) },
  { additionalProperties: false },
);

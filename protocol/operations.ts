import { Type, type Static } from '@sinclair/typebox';
import { Name, Reason, Timestamp } from './common.js';

/**
 * Operations: every deploy, teardown and update the controller carries out, and the changes it
 * makes on its own (`reschedule`: placing pending instances and moving them off lost hosts;
 * `heal`: sending a host the set it missed), with one step per host and an append-only log. Admin API: `GET /v1/ops`, `GET /v1/ops/:id`.
 */
export const OPERATION_KINDS = [
  'deploy',
  'teardown',
  'update',
  'reschedule',
  'heal',
  'retry',
  'restart',
] as const;
export type OperationKind = (typeof OPERATION_KINDS)[number];
/**
 * `partial`: some hosts succeeded and some failed. `halted`: a rollout stopped at its first
 * failed host (the reason says which), the hosts after it untouched; it can be resumed or
 * cancelled. `cancelled`: a halted rollout an operator ended, its untouched hosts `skipped`.
 */
export const OPERATION_STATES = ['running', 'succeeded', 'failed', 'partial', 'halted', 'cancelled'] as const;
export type OperationState = (typeof OPERATION_STATES)[number];
export const STEP_STATES = ['pending', 'running', 'succeeded', 'failed', 'skipped'] as const;
export type StepState = (typeof STEP_STATES)[number];
export const LOG_LEVELS = ['info', 'warn', 'error'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

/** Log lines one `GET /v1/ops/:id` returns at most. */
export const MAX_OPERATION_LOG_PAGE = 1000;

const OperationId = Type.String({ minLength: 1, maxLength: 64, pattern: '^[A-Za-z0-9-]+$' });

export const OperationSummary = Type.Object(
  {
    /** Services the operation placed (deploy) or removed (teardown). */
    services: Type.Integer({ minimum: 0 }),
    /** Services it removed from the desired state. */
    removed: Type.Integer({ minimum: 0 }),
    hosts: Type.Integer({ minimum: 0 }),
    failedHosts: Type.Integer({ minimum: 0 }),
  },
  { additionalProperties: false },
);
export type OperationSummary = Static<typeof OperationSummary>;

export const OperationView = Type.Object(
  {
    id: OperationId,
    kind: Type.Union(OPERATION_KINDS.map((k) => Type.Literal(k))),
    state: Type.Union(OPERATION_STATES.map((s) => Type.Literal(s))),
    actor: Type.String({ maxLength: 128 }),
    /** What it was done to: `all`, `host web-1`, `service api`, or the number of services. */
    target: Type.String({ maxLength: 256 }),
    createdAt: Timestamp,
    finishedAt: Type.Union([Timestamp, Type.Null()]),
    /** Why it failed as a whole (e.g. the controller restarted while it ran). */
    reason: Type.Union([Reason, Type.Null()]),
    summary: OperationSummary,
  },
  { additionalProperties: false },
);
export type OperationView = Static<typeof OperationView>;

export const OperationStepView = Type.Object(
  {
    host: Name,
    state: Type.Union(STEP_STATES.map((s) => Type.Literal(s))),
    /** The generation sent to the host's agent. */
    generation: Type.Union([Type.Integer({ minimum: 0 }), Type.Null()]),
    services: Type.Integer({ minimum: 0 }),
    /** `applied`, `unchanged`, or why it failed. */
    detail: Type.Union([Reason, Type.Null()]),
    startedAt: Type.Union([Timestamp, Type.Null()]),
    finishedAt: Type.Union([Timestamp, Type.Null()]),
  },
  { additionalProperties: false },
);
export type OperationStepView = Static<typeof OperationStepView>;

export const OperationLogEntry = Type.Object(
  {
    seq: Type.Integer({ minimum: 1 }),
    time: Timestamp,
    level: Type.Union(LOG_LEVELS.map((l) => Type.Literal(l))),
    host: Type.Union([Name, Type.Null()]),
    message: Reason,
  },
  { additionalProperties: false },
);
export type OperationLogEntry = Static<typeof OperationLogEntry>;

export const OperationListQuery = Type.Object(
  { limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 1000 })) },
  { additionalProperties: false },
);
export type OperationListQuery = Static<typeof OperationListQuery>;

export const OperationListResponse = Type.Object(
  { operations: Type.Array(OperationView, { maxItems: 1000 }) },
  { additionalProperties: false },
);
export type OperationListResponse = Static<typeof OperationListResponse>;

export const OperationParams = Type.Object({ id: OperationId }, { additionalProperties: false });
export type OperationParams = Static<typeof OperationParams>;

/** `afterSeq`: only log lines after this one (for following a running operation). */
export const OperationDetailQuery = Type.Object(
  { afterSeq: Type.Optional(Type.Integer({ minimum: 0 })) },
  { additionalProperties: false },
);
export type OperationDetailQuery = Static<typeof OperationDetailQuery>;

export const OperationDetail = Type.Object(
  {
    operation: OperationView,
    steps: Type.Array(OperationStepView, { maxItems: 10_000 }),
    /** Log lines after `afterSeq`, oldest first, at most MAX_OPERATION_LOG_PAGE. */
    log: Type.Array(OperationLogEntry, { maxItems: MAX_OPERATION_LOG_PAGE }),
  },
  { additionalProperties: false },
);
export type OperationDetail = Static<typeof OperationDetail>;

import { Type, type Static } from '@sinclair/typebox';
import { HostId, InstanceName, Timestamp } from './common.js';
import { AgentVersion, HostMetrics, ServiceStatus } from './heartbeat.js';
import { ServiceSpec } from './service-spec.js';

/**
 * The agent's API (mTLS, callable only by the controller-client identity pinned in the
 * worker's bundle). Routes: GET /v1/health, GET /v1/status, POST /v1/apply, POST /v1/teardown,
 * POST /v1/restart, POST /v1/diagnostics, POST /v1/self-destruct.
 */
export const MAX_APPLY_SERVICES = 500;
/** The worker's RFC 5424 log, under the agent's state dir, unless configured otherwise. */
export const WORKER_LOG_FILE = 'logs/worker.log';
/** Largest apply body the agent accepts, in bytes. */
export const MAX_APPLY_BODY_BYTES = 4 * 1024 * 1024;

const OperationId = Type.String({ pattern: '^[A-Za-z0-9-]{8,64}$' });

/** The host's whole desired set. Generations only move forward. */
export const ApplyRequest = Type.Object(
  {
    generation: Type.Integer({ minimum: 1, maximum: Number.MAX_SAFE_INTEGER }),
    services: Type.Array(ServiceSpec, { maxItems: MAX_APPLY_SERVICES }),
  },
  { additionalProperties: false },
);
export type ApplyRequest = Static<typeof ApplyRequest>;

/** 202 answer to an apply; `noop` when the generation was already the desired one. */
export const ApplyAccepted = Type.Object(
  { operationId: OperationId, generation: Type.Integer({ minimum: 0 }), noop: Type.Boolean() },
  { additionalProperties: false },
);
export type ApplyAccepted = Static<typeof ApplyAccepted>;

export const AgentHealth = Type.Object(
  {
    version: AgentVersion,
    hostId: HostId,
    uptimeSeconds: Type.Number({ minimum: 0 }),
  },
  { additionalProperties: false },
);
export type AgentHealth = Static<typeof AgentHealth>;

export const AgentStatus = Type.Object(
  {
    version: AgentVersion,
    hostId: HostId,
    uptimeSeconds: Type.Number({ minimum: 0 }),
    /** The desired generation (0 before the first apply). */
    generation: Type.Integer({ minimum: 0 }),
    /** True while an apply is being carried out. */
    applying: Type.Boolean(),
    /** Desired services, plus ones still being removed during a change. */
    services: Type.Array(ServiceStatus, { maxItems: 2 * MAX_APPLY_SERVICES }),
    metrics: HostMetrics,
  },
  { additionalProperties: false },
);
export type AgentStatus = Static<typeof AgentStatus>;

/** Stops and forgets one service, or every service when `service` is absent. */
export const TeardownRequest = Type.Object(
  { service: Type.Optional(InstanceName) },
  { additionalProperties: false },
);
export type TeardownRequest = Static<typeof TeardownRequest>;

export const TeardownResponse = Type.Object(
  { operationId: OperationId, stopped: Type.Array(InstanceName, { maxItems: MAX_APPLY_SERVICES }) },
  { additionalProperties: false },
);
export type TeardownResponse = Static<typeof TeardownResponse>;

/** Stops one supervised service and starts it again on the same spec (its restart count goes up). */
export const RestartRequest = Type.Object({ service: InstanceName }, { additionalProperties: false });
export type RestartRequest = Static<typeof RestartRequest>;

/** 202 answer to a restart, once the new process was launched (`error`: it could not start). */
export const RestartResponse = Type.Object(
  {
    operationId: OperationId,
    service: InstanceName,
    pid: Type.Union([Type.Integer({ minimum: 1 }), Type.Null()]),
    restarts: Type.Integer({ minimum: 0 }),
    error: Type.Union([Type.String({ maxLength: 2048 }), Type.Null()]),
  },
  { additionalProperties: false },
);
export type RestartResponse = Static<typeof RestartResponse>;

/** Diagnostics the agent will run; any other kind is refused with 403. */
export const DIAGNOSTIC_KINDS = ['disk', 'memory', 'processes', 'log-tail'] as const;
export type DiagnosticKind = (typeof DIAGNOSTIC_KINDS)[number];
export const MAX_LOG_TAIL_LINES = 500;

/** `kind` is free text on purpose: a kind off the allow-list is a 403, not a 400. */
export const DiagnosticsRequest = Type.Object(
  {
    kind: Type.String({ minLength: 1, maxLength: 64 }),
    /** For `log-tail`: which service. */
    service: Type.Optional(InstanceName),
    /** For `log-tail`: how many lines from each stream (default 100). */
    lines: Type.Optional(Type.Integer({ minimum: 1, maximum: MAX_LOG_TAIL_LINES })),
  },
  { additionalProperties: false },
);
export type DiagnosticsRequest = Static<typeof DiagnosticsRequest>;

const Bytes = Type.Integer({ minimum: 0 });
const Line = Type.String({ maxLength: 8192 });

export const DiskDiagnostic = Type.Object(
  {
    kind: Type.Literal('disk'),
    filesystems: Type.Array(
      Type.Object(
        {
          path: Type.String({ maxLength: 1024 }),
          totalBytes: Bytes,
          freeBytes: Bytes,
          availableBytes: Bytes,
        },
        { additionalProperties: false },
      ),
      { maxItems: 8 },
    ),
  },
  { additionalProperties: false },
);
export const MemoryDiagnostic = Type.Object(
  {
    kind: Type.Literal('memory'),
    totalBytes: Bytes,
    availableBytes: Bytes,
    swapTotalBytes: Bytes,
    swapFreeBytes: Bytes,
    agentRssBytes: Bytes,
  },
  { additionalProperties: false },
);
export const ProcessesDiagnostic = Type.Object(
  {
    kind: Type.Literal('processes'),
    total: Type.Integer({ minimum: 0 }),
    /** The largest processes by resident memory. */
    top: Type.Array(
      Type.Object(
        {
          pid: Type.Integer({ minimum: 1 }),
          command: Type.String({ maxLength: 64 }),
          state: Type.String({ maxLength: 4 }),
          rssBytes: Bytes,
          service: Type.Union([InstanceName, Type.Null()]),
        },
        { additionalProperties: false },
      ),
      { maxItems: 100 },
    ),
  },
  { additionalProperties: false },
);
export const LogTailDiagnostic = Type.Object(
  {
    kind: Type.Literal('log-tail'),
    service: InstanceName,
    stdout: Type.Array(Line, { maxItems: MAX_LOG_TAIL_LINES }),
    stderr: Type.Array(Line, { maxItems: MAX_LOG_TAIL_LINES }),
  },
  { additionalProperties: false },
);
export const DiagnosticsResponse = Type.Union([
  DiskDiagnostic,
  MemoryDiagnostic,
  ProcessesDiagnostic,
  LogTailDiagnostic,
]);
export type DiagnosticsResponse = Static<typeof DiagnosticsResponse>;

/** Optional guard: when `hostId` is given it must be this worker's, or the call is refused. */
export const SelfDestructRequest = Type.Object(
  { hostId: Type.Optional(HostId) },
  { additionalProperties: false },
);
export type SelfDestructRequest = Static<typeof SelfDestructRequest>;

export const SelfDestructAccepted = Type.Object(
  { operationId: OperationId, hostId: HostId, startedAt: Timestamp },
  { additionalProperties: false },
);
export type SelfDestructAccepted = Static<typeof SelfDestructAccepted>;

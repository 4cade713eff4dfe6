import { Type, type Static } from '@sinclair/typebox';
import { HostId, InstanceName, Timestamp } from './common.js';
import { ControllerList } from './controller-list.js';
import { RELEASE_VERSION_RE } from './release.js';
import { ImageReference } from './service-spec.js';

/** An agent's version, as it reports it: a release version (semver-ish, no spaces or controls). */
export const AgentVersion = Type.String({ pattern: RELEASE_VERSION_RE.source, minLength: 1, maxLength: 64 });

/**
 * Free text a worker sends (service errors, event details): at most 2048 UTF-16 units, no NUL
 * (PostgreSQL cannot store it) and no lone surrogates (no UTF-8 for them). Other control
 * characters are accepted and stored as sent, since a service's own error output may carry
 * them; every reader shows them escaped (the CLI through cli/terminal-text.ts). The pattern
 * means the same with and without the regex `u` flag (Ajv sets it, TypeBox's checker not).
 */
export const WorkerText = Type.String({
  maxLength: 2048,
  pattern: '^(?:[^\\u0000\\uD800-\\uDFFF]|[\\uD800-\\uDBFF][\\uDC00-\\uDFFF])*$',
});

export const SERVICE_STATES = [
  'pending',
  'starting',
  'running',
  'degraded',
  'restarting',
  'stopped',
  'failed',
  'unknown',
] as const;
export type ServiceState = (typeof SERVICE_STATES)[number];
export const ServiceState = Type.Union(SERVICE_STATES.map((s) => Type.Literal(s)));

/**
 * A runtime's kind as a worker names it: a short lower-case word, so a kind newer than the
 * controller is still stored and shown (not refused), but never arbitrary text.
 */
export const RuntimeKind = Type.String({ minLength: 1, maxLength: 16, pattern: '^[a-z][a-z0-9-]*$' });
/** A container's full id, as the engine gives it (64 lower-case hex digits). */
export const ContainerId = Type.String({ pattern: '^[0-9a-f]{64}$' });

/** One service as the agent observes it. */
export const ServiceStatus = Type.Object(
  {
    name: InstanceName,
    state: ServiceState,
    restarts: Type.Integer({ minimum: 0 }),
    lastError: Type.Union([WorkerText, Type.Null()]),
    pid: Type.Union([Type.Integer({ minimum: 1 }), Type.Null()]),
    since: Type.Union([Timestamp, Type.Null()]),
    /** `process` or `container`; absent from agents before container services. */
    runtime: Type.Optional(RuntimeKind),
    /** A container service's image and its current container's id. */
    image: Type.Optional(ImageReference),
    containerId: Type.Optional(ContainerId),
  },
  { additionalProperties: false },
);
export type ServiceStatus = Static<typeof ServiceStatus>;

export const HostMetrics = Type.Object(
  {
    load1: Type.Number({ minimum: 0 }),
    load5: Type.Number({ minimum: 0 }),
    load15: Type.Number({ minimum: 0 }),
    memTotalBytes: Type.Integer({ minimum: 0 }),
    memAvailableBytes: Type.Integer({ minimum: 0 }),
    diskTotalBytes: Type.Integer({ minimum: 0 }),
    diskFreeBytes: Type.Integer({ minimum: 0 }),
    uptimeSeconds: Type.Number({ minimum: 0 }),
  },
  { additionalProperties: false },
);
export type HostMetrics = Static<typeof HostMetrics>;

export const LIFECYCLE_EVENT_TYPES = [
  'agent-started',
  'apply-finished',
  'apply-failed',
  'service-restarted',
  'service-failed',
  'service-degraded',
  'teardown-finished',
] as const;
export type LifecycleEventType = (typeof LIFECYCLE_EVENT_TYPES)[number];

/** Re-sent with every heartbeat until the controller acknowledges its id. */
export const LifecycleEvent = Type.Object(
  {
    id: Type.String({ pattern: '^[A-Za-z0-9-]{8,64}$' }),
    type: Type.Union(LIFECYCLE_EVENT_TYPES.map((t) => Type.Literal(t))),
    time: Timestamp,
    service: Type.Optional(InstanceName),
    generation: Type.Optional(Type.Integer({ minimum: 0 })),
    /** The agent operation (apply, teardown) the event closes, when there is one. */
    operationId: Type.Optional(Type.String({ pattern: '^[A-Za-z0-9-]{8,64}$' })),
    detail: Type.Optional(WorkerText),
  },
  { additionalProperties: false },
);
export type LifecycleEvent = Static<typeof LifecycleEvent>;

/**
 * The agent's clock when it sent a heartbeat, so the controller can estimate the offset
 * between the two (agent − controller), correcting for half the previous round trip.
 */
export const AgentClock = Type.Object(
  {
    sentAt: Timestamp,
    /** The previous heartbeat's round trip as the agent measured it, in ms. */
    lastRoundTripMs: Type.Optional(Type.Integer({ minimum: 0, maximum: 600_000 })),
  },
  { additionalProperties: false },
);
export type AgentClock = Static<typeof AgentClock>;

export const MAX_HEARTBEAT_SERVICES = 1000;
export const MAX_HEARTBEAT_EVENTS = 200;

export const HeartbeatRequest = Type.Object(
  {
    hostId: HostId,
    agentVersion: AgentVersion,
    /** The desired-state generation the agent has applied. */
    generation: Type.Integer({ minimum: 0 }),
    metrics: HostMetrics,
    services: Type.Array(ServiceStatus, { maxItems: MAX_HEARTBEAT_SERVICES }),
    events: Type.Array(LifecycleEvent, { maxItems: MAX_HEARTBEAT_EVENTS }),
    clock: Type.Optional(AgentClock),
  },
  { additionalProperties: false },
);
export type HeartbeatRequest = Static<typeof HeartbeatRequest>;

export const HeartbeatResponse = Type.Object(
  {
    ackedEventIds: Type.Array(Type.String({ maxLength: 64 }), { maxItems: MAX_HEARTBEAT_EVENTS }),
    intervalMs: Type.Integer({ minimum: 1 }),
    serverTime: Timestamp,
    /**
     * Every live controller's addresses, the answering one first: sent only to an agent that
     * asked for it (HEADER_CONTROLLER_LIST), so an agent whose schema predates the field never
     * gets an answer it would refuse.
     */
    controllers: Type.Optional(ControllerList),
  },
  { additionalProperties: false },
);
export type HeartbeatResponse = Static<typeof HeartbeatResponse>;

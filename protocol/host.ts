import { Type, type Static } from '@sinclair/typebox';
import { Address, Fingerprint, HostId, Labels, Name, Port, Timestamp } from './common.js';
import { HostMetrics } from './heartbeat.js';
import { WipeStateSchema } from './wipe.js';
import { HOST_STATUSES } from './constants.js';

// The list lives in constants.ts (no schema library to load for a CLI that only shows it).
export { HOST_STATUSES } from './constants.js';
export type HostStatus = (typeof HOST_STATUSES)[number];
export const HostStatus = Type.Union(HOST_STATUSES.map((s) => Type.Literal(s)));

/**
 * `eligible`: takes new instances. `ineligible`: takes none and keeps the ones it has.
 * `draining`: takes none, and its instances move away (each stopped once its replacement runs,
 * or at the drain deadline); it becomes `ineligible` once nothing is left on it.
 */
export const HOST_ELIGIBILITIES = ['eligible', 'ineligible', 'draining'] as const;
export type HostEligibility = (typeof HOST_ELIGIBILITIES)[number];
export const HostEligibility = Type.Union(HOST_ELIGIBILITIES.map((s) => Type.Literal(s)));

/**
 * A host's clock offset beyond which it is shown with a warning, in ms. A minute: far more
 * than the error of the estimate (half a round trip, seconds at worst), far less than the
 * day of backdating that keeps certificates valid on a slow clock; a worker past it has a
 * broken time sync, which makes its log and event times misleading.
 */
export const CLOCK_OFFSET_WARN_MS = 60_000;

/** The last estimate of a host's clock offset (agent clock − controller clock). */
export const HostClock = Type.Object(
  {
    offsetMs: Type.Integer(),
    measuredAt: Timestamp,
    /** True when |offsetMs| exceeds `warnAfterMs`. */
    warning: Type.Boolean(),
    warnAfterMs: Type.Integer({ minimum: 0 }),
  },
  { additionalProperties: false },
);
export type HostClock = Static<typeof HostClock>;

/** A host as the admin API shows it. Also the allow-list of what leaves the controller. */
export const HostView = Type.Object(
  {
    id: HostId,
    name: Name,
    address: Address,
    agentPort: Port,
    updaterPort: Port,
    status: HostStatus,
    labels: Labels,
    enrolledAt: Timestamp,
    lastSeen: Type.Union([Timestamp, Type.Null()]),
    agentVersion: Type.Union([Type.String({ maxLength: 64 }), Type.Null()]),
    generation: Type.Integer({ minimum: 0 }),
    agentFingerprint: Type.Union([Fingerprint, Type.Null()]),
    updaterFingerprint: Type.Union([Fingerprint, Type.Null()]),
    metrics: Type.Union([HostMetrics, Type.Null()]),
    decommissionedAt: Type.Union([Timestamp, Type.Null()]),
    /** Optional for views from controllers that predate it (see WipeState). */
    wipe: Type.Optional(WipeStateSchema),
    wipedAt: Type.Optional(Type.Union([Timestamp, Type.Null()])),
    /** Null until a heartbeat since the controller started carried the agent's clock. */
    clock: Type.Optional(Type.Union([HostClock, Type.Null()])),
    /** Whether placement may use it (see HOST_ELIGIBILITIES); absent from older controllers. */
    eligibility: Type.Optional(HostEligibility),
    /** While draining: when what has not moved yet is stopped anyway. */
    drainDeadline: Type.Optional(Type.Union([Timestamp, Type.Null()])),
  },
  { additionalProperties: false },
);
export type HostView = Static<typeof HostView>;

import { Type, type Static } from '@sinclair/typebox';
import { LABEL_KEY_RE, Labels, Name, Timestamp } from './common.js';
import { ServiceName } from './service-spec.js';
import { PlanEntry } from './deployment.js';
import { HostEligibility } from './host.js';

/** Longest drain deadline accepted, in ms (a week). */
export const MAX_DRAIN_DEADLINE_MS = 7 * 24 * 3600_000;
/** Drain deadline when the request names none, in ms. */
export const DEFAULT_DRAIN_DEADLINE_MS = 5 * 60_000;

/** Admin API: `POST /v1/hosts/:name/drain`. */
export const DrainRequest = Type.Object(
  { deadlineMs: Type.Optional(Type.Integer({ minimum: 0, maximum: MAX_DRAIN_DEADLINE_MS })) },
  { additionalProperties: false },
);
export type DrainRequest = Static<typeof DrainRequest>;

/** Admin API: `POST /v1/hosts/:name/eligibility`. */
export const EligibilityRequest = Type.Object({ eligible: Type.Boolean() }, { additionalProperties: false });
export type EligibilityRequest = Static<typeof EligibilityRequest>;

const LabelKey = Type.String({ pattern: LABEL_KEY_RE.source, maxLength: 63 });

/** Admin API: `POST /v1/hosts/:name/labels`: set some, remove some, or only see what would move. */
export const LabelRequest = Type.Object(
  {
    set: Type.Optional(Labels),
    remove: Type.Optional(Type.Array(LabelKey, { maxItems: 64 })),
    dryRun: Type.Optional(Type.Boolean()),
  },
  { additionalProperties: false },
);
export type LabelRequest = Static<typeof LabelRequest>;

/** What a change of a host's eligibility or labels does to placement, as far as it is known now. */
export const PlacementChange = Type.Object(
  {
    /** Instances that move or are placed (kept ones are left out). */
    plan: Type.Array(PlanEntry, { maxItems: 100_000 }),
    /** Instances stopped where they are with nowhere else to go. */
    removed: Type.Array(Type.Object({ service: ServiceName, host: Name }, { additionalProperties: false }), {
      maxItems: 100_000,
    }),
  },
  { additionalProperties: false },
);
export type PlacementChange = Static<typeof PlacementChange>;

/** What drain, eligibility and label answer. */
export const EligibilityResponse = Type.Object(
  {
    host: Name,
    eligibility: HostEligibility,
    drainDeadline: Type.Union([Timestamp, Type.Null()]),
    labels: Labels,
    dryRun: Type.Boolean(),
    changes: PlacementChange,
  },
  { additionalProperties: false },
);
export type EligibilityResponse = Static<typeof EligibilityResponse>;

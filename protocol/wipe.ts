import { Type, type Static } from '@sinclair/typebox';
import { HostId, Timestamp } from './common.js';

/** Worker API: a decommissioned worker reports that its self-destruct ran (the reaper sends it). */
export const WIPE_REPORT_PATH = '/v1/wipe-report';
/** Worker API: whether this certificate's host is still enrolled (the worker's agent identity). */
export const STANDING_PATH = '/v1/standing';

/** What a reaper reports when it has finished; errors are what it could not do. */
export const WipeReport = Type.Object(
  {
    hostId: HostId,
    stoppedServices: Type.Integer({ minimum: 0, maximum: 100_000 }),
    stoppedDaemons: Type.Array(Type.String({ pattern: '^[a-z][a-z0-9-]{0,31}$' }), { maxItems: 16 }),
    stoppedUnits: Type.Array(Type.String({ pattern: '^[A-Za-z0-9@._:-]{1,128}$' }), { maxItems: 16 }),
    deletedPaths: Type.Integer({ minimum: 0 }),
    keptPaths: Type.Array(Type.String({ maxLength: 1024 }), { maxItems: 16 }),
    errors: Type.Array(Type.String({ maxLength: 2048 }), { maxItems: 32 }),
    finishedAt: Timestamp,
  },
  { additionalProperties: false },
);
export type WipeReport = Static<typeof WipeReport>;

export const WipeReportResponse = Type.Object(
  { hostId: HostId, wipedAt: Timestamp },
  { additionalProperties: false },
);
export type WipeReportResponse = Static<typeof WipeReportResponse>;

export const StandingResponse = Type.Object(
  { hostId: HostId, standing: Type.Literal('enrolled') },
  { additionalProperties: false },
);
export type StandingResponse = Static<typeof StandingResponse>;

/**
 * Where a decommissioned host's wipe stands: `pending` until its reaper reported, then `wiped`;
 * null for a host that is not decommissioned and never reported, or that was decommissioned
 * with nothing on it to wipe (an enrollment taken over before it was used).
 */
export const WIPE_STATES = ['pending', 'wiped'] as const;
export type WipeState = (typeof WIPE_STATES)[number];
export const WipeStateSchema = Type.Union([...WIPE_STATES.map((s) => Type.Literal(s)), Type.Null()]);

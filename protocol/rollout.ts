import { Type, type Static } from '@sinclair/typebox';

/**
 * How a deploy or an update goes out over its hosts: in batches of at most `maxParallel`
 * (default: every host at once for a deploy, a quarter of them for an update), the first
 * `canary` hosts alone, then a pause of `canaryWaitMs` after which the canaries must still be
 * healthy before the rest. With `haltOnFailure` (the default) the first host that fails stops
 * the rollout: the hosts after it are not touched and the operation ends `halted`, to be
 * continued (`POST /v1/ops/:id/resume`) or ended (`POST /v1/ops/:id/cancel`).
 */
export const DEFAULT_CANARY_WAIT_MS = 30_000;
/** The share of the hosts an update sends at once by default, in percent. */
export const DEFAULT_UPDATE_BATCH_PERCENT = 25;
/** The longest a canary wait may be, in ms (a day). */
export const MAX_CANARY_WAIT_MS = 24 * 60 * 60_000;
/** The longest a deploy's services may be watched before a host's step succeeds, in ms (an hour). */
export const MAX_MIN_HEALTHY_MS = 60 * 60_000;

export const RolloutOptions = Type.Object(
  {
    maxParallel: Type.Optional(Type.Integer({ minimum: 1, maximum: 10_000 })),
    canary: Type.Optional(Type.Integer({ minimum: 0, maximum: 10_000 })),
    canaryWaitMs: Type.Optional(Type.Integer({ minimum: 0, maximum: MAX_CANARY_WAIT_MS })),
    haltOnFailure: Type.Optional(Type.Boolean()),
    /**
     * Deploys: a host's step succeeds only once every service of its set has run without a
     * break for this long (default: the controller's, 10 s).
     */
    minHealthyMs: Type.Optional(Type.Integer({ minimum: 0, maximum: MAX_MIN_HEALTHY_MS })),
    /** Deploys: when a host fails, put the previous spec back (a second operation). */
    autoRevert: Type.Optional(Type.Boolean()),
  },
  { additionalProperties: false },
);
export type RolloutOptions = Static<typeof RolloutOptions>;

/** `POST /v1/ops/:id/resume` and `/cancel` take no body; they answer with the operation. */
export const opResumePath = (id: string): string => `/v1/ops/${encodeURIComponent(id)}/resume`;
export const opCancelPath = (id: string): string => `/v1/ops/${encodeURIComponent(id)}/cancel`;

/** What the controller keeps of a halted rollout to resume it (the `halted_rollouts` row). */
export const HaltedRollout = Type.Object(
  {
    policy: Type.Object(
      {
        maxParallel: Type.Integer({ minimum: 1 }),
        canary: Type.Integer({ minimum: 0 }),
        canaryWaitMs: Type.Integer({ minimum: 0 }),
        haltOnFailure: Type.Boolean(),
        /** Absent in rollouts halted before the health gate: no gate. */
        minHealthyMs: Type.Optional(Type.Integer({ minimum: 0, maximum: MAX_MIN_HEALTHY_MS })),
        autoRevert: Type.Optional(Type.Boolean()),
      },
      { additionalProperties: false },
    ),
    /** Every host of the rollout, in the order it sends them. */
    hosts: Type.Array(Type.String({ maxLength: 63 }), { maxItems: 10_000 }),
    /** An update's release: the kept upload and how it was pushed. */
    update: Type.Optional(
      Type.Object(
        {
          file: Type.String({ minLength: 1, maxLength: 4096 }),
          sha256: Type.String({ pattern: '^[0-9a-f]{64}$' }),
          version: Type.String({ maxLength: 128 }),
          includeSelf: Type.Boolean(),
          force: Type.Boolean(),
        },
        { additionalProperties: false },
      ),
    ),
  },
  { additionalProperties: false },
);
export type HaltedRollout = Static<typeof HaltedRollout>;

import { Type, type Static } from '@sinclair/typebox';
import { InstanceName, Name, Reason } from './common.js';
import { OPERATION_STATES } from './operations.js';

/**
 * `POST /v1/restart` (admin, scope `deploy`): stops and starts again every instance of a
 * service (or one instance, `api#2`) where it is placed, or only on `host`, one host at a time,
 * recorded as a `restart` operation with one step per host. 404 CORRAL_ERR_NOT_FOUND when no
 * placed instance matches; nothing is changed then.
 */
export const ServiceRestartRequest = Type.Object(
  { service: InstanceName, host: Type.Optional(Name) },
  { additionalProperties: false },
);
export type ServiceRestartRequest = Static<typeof ServiceRestartRequest>;

/** One instance's restart on one host: its new pid and restart count, or why it failed. */
export const InstanceRestartResult = Type.Object(
  {
    host: Name,
    instance: InstanceName,
    ok: Type.Boolean(),
    pid: Type.Union([Type.Integer({ minimum: 1 }), Type.Null()]),
    restarts: Type.Union([Type.Integer({ minimum: 0 }), Type.Null()]),
    reason: Type.Union([Reason, Type.Null()]),
  },
  { additionalProperties: false },
);
export type InstanceRestartResult = Static<typeof InstanceRestartResult>;

export const ServiceRestartResponse = Type.Object(
  {
    operationId: Type.String({ maxLength: 64 }),
    service: InstanceName,
    state: Type.Union(OPERATION_STATES.map((s) => Type.Literal(s))),
    instances: Type.Array(InstanceRestartResult, { maxItems: 10_000 }),
    /** True when every instance restarted. */
    ok: Type.Boolean(),
  },
  { additionalProperties: false },
);
export type ServiceRestartResponse = Static<typeof ServiceRestartResponse>;

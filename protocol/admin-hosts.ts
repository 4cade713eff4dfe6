import { Type, type Static } from '@sinclair/typebox';
import { Fingerprint, InstanceName, Name, Reason, Timestamp } from './common.js';
import { ContainerId, RuntimeKind, ServiceState } from './heartbeat.js';
import { ImageReference } from './service-spec.js';
import { HostStatus, HostView } from './host.js';

import { MAX_HOST_PAGE_LIMIT } from './constants.js';

// The page bounds live in constants.ts (no schema library to load for a CLI that only pages).
export { DEFAULT_HOST_PAGE_LIMIT, MAX_HOST_PAGE_LIMIT } from './constants.js';
/** Longest `cursor` accepted, in characters (an opaque token the previous page returned). */
export const MAX_HOST_CURSOR_CHARS = 1024;

/**
 * Admin API: `GET /v1/hosts?status=S&limit=N&cursor=C`, one page of hosts in name order.
 * A walk from no cursor to `nextCursor: null` sees every host that existed throughout it
 * once, whatever is enrolled or decommissioned meanwhile (keyset paging, no offsets).
 */
export const HostListQuery = Type.Object(
  {
    status: Type.Optional(HostStatus),
    limit: Type.Optional(Type.Integer({ minimum: 1, maximum: MAX_HOST_PAGE_LIMIT })),
    cursor: Type.Optional(Type.String({ minLength: 1, maxLength: MAX_HOST_CURSOR_CHARS })),
  },
  { additionalProperties: false },
);
export type HostListQuery = Static<typeof HostListQuery>;

export const HostListResponse = Type.Object(
  {
    hosts: Type.Array(HostView, { maxItems: MAX_HOST_PAGE_LIMIT }),
    /** Pass as `cursor` for the next page; null on the last page. */
    nextCursor: Type.Union([Type.String({ maxLength: MAX_HOST_CURSOR_CHARS }), Type.Null()]),
  },
  { additionalProperties: false },
);
export type HostListResponse = Static<typeof HostListResponse>;

export const HostNameParams = Type.Object({ name: Name }, { additionalProperties: false });
export type HostNameParams = Static<typeof HostNameParams>;

/** A service as the host's agent last reported it. */
export const ObservedServiceView = Type.Object(
  {
    name: InstanceName,
    state: ServiceState,
    restarts: Type.Integer({ minimum: 0 }),
    lastError: Type.Union([Reason, Type.Null()]),
    pid: Type.Union([Type.Integer({ minimum: 1 }), Type.Null()]),
    since: Type.Union([Timestamp, Type.Null()]),
    updatedAt: Timestamp,
    /** As the agent reported them; absent for agents before container services. */
    runtime: Type.Optional(RuntimeKind),
    image: Type.Optional(ImageReference),
    containerId: Type.Optional(ContainerId),
  },
  { additionalProperties: false },
);
export type ObservedServiceView = Static<typeof ObservedServiceView>;

export const PinView = Type.Object(
  {
    role: Type.Union([Type.Literal('agent'), Type.Literal('updater')]),
    fingerprint: Fingerprint,
    notAfter: Timestamp,
    createdAt: Timestamp,
    /** A renewal replaced it; it is retired once the new certificate is seen. */
    superseded: Type.Boolean(),
  },
  { additionalProperties: false },
);
export type PinView = Static<typeof PinView>;

export const HostEventView = Type.Object(
  {
    id: Type.String({ maxLength: 64 }),
    type: Type.String({ maxLength: 64 }),
    time: Timestamp,
    service: Type.Union([InstanceName, Type.Null()]),
    generation: Type.Union([Type.Integer({ minimum: 0 }), Type.Null()]),
    detail: Type.Union([Reason, Type.Null()]),
    receivedAt: Timestamp,
  },
  { additionalProperties: false },
);
export type HostEventView = Static<typeof HostEventView>;

/** Admin API: `GET /v1/hosts/:name`, one host in full. */
export const HostDetail = Type.Object(
  {
    host: HostView,
    sans: Type.Array(Type.String({ maxLength: 253 }), { maxItems: 32 }),
    enrolledVia: Type.Union([Type.Literal('bundle'), Type.Literal('join')]),
    /** The address the join request came from (null for `enroll`); `host.address` is the one claimed. */
    joinSource: Type.Union([Type.String({ maxLength: 64 }), Type.Null()]),
    /** When the worker's bundle was confirmed written; null: never confirmed. */
    bundleWrittenAt: Type.Union([Timestamp, Type.Null()]),
    services: Type.Array(ObservedServiceView, { maxItems: 1000 }),
    pins: Type.Array(PinView, { maxItems: 16 }),
    recentEvents: Type.Array(HostEventView, { maxItems: 100 }),
  },
  { additionalProperties: false },
);
export type HostDetail = Static<typeof HostDetail>;

/** Admin API: `POST /v1/hosts/:name/decommission`. */
export const DecommissionResponse = Type.Object(
  {
    host: HostView,
    selfDestruct: Type.Object(
      {
        /** The agent acknowledged; false when it could not be reached in time (best effort). */
        ok: Type.Boolean(),
        message: Type.Union([Reason, Type.Null()]),
      },
      { additionalProperties: false },
    ),
    closedConnections: Type.Integer({ minimum: 0 }),
  },
  { additionalProperties: false },
);
export type DecommissionResponse = Static<typeof DecommissionResponse>;

/** Admin API: `POST /v1/check`, every host's agent probed over mutual TLS. */
export const CheckResult = Type.Object(
  {
    name: Name,
    address: Type.String({ maxLength: 300 }),
    status: HostStatus,
    reachable: Type.Boolean(),
    latencyMs: Type.Union([Type.Number({ minimum: 0 }), Type.Null()]),
    agentVersion: Type.Union([Type.String({ maxLength: 64 }), Type.Null()]),
    error: Type.Union([
      Type.Object({ code: Type.String({ maxLength: 64 }), message: Reason }, { additionalProperties: false }),
      Type.Null(),
    ]),
  },
  { additionalProperties: false },
);
export type CheckResult = Static<typeof CheckResult>;

export const CheckRequest = Type.Object(
  { timeoutMs: Type.Optional(Type.Integer({ minimum: 100, maximum: 60_000 })) },
  { additionalProperties: false },
);
export type CheckRequest = Static<typeof CheckRequest>;

export const CheckResponse = Type.Object(
  { results: Type.Array(CheckResult, { maxItems: 1_000_000 }) },
  { additionalProperties: false },
);
export type CheckResponse = Static<typeof CheckResponse>;

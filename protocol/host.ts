import { Type, type Static } from '@sinclair/typebox';
import { Address, Fingerprint, HostId, Labels, Name, Port, Timestamp } from './common.js';
import { HostMetrics } from './heartbeat.js';

export const HOST_STATUSES = ['pending', 'online', 'stale', 'offline', 'decommissioned'] as const;
export type HostStatus = (typeof HOST_STATUSES)[number];
export const HostStatus = Type.Union(HOST_STATUSES.map((s) => Type.Literal(s)));

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
  },
  { additionalProperties: false },
);
export type HostView = Static<typeof HostView>;

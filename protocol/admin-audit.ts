import { Type, type Static } from '@sinclair/typebox';
import { Timestamp } from './common.js';

/** One entry of the controller's hash-chained, append-only audit log. */
export const AuditEntry = Type.Object(
  {
    seq: Type.Integer({ minimum: 1 }),
    time: Timestamp,
    actor: Type.String({ maxLength: 128 }),
    action: Type.String({ maxLength: 64 }),
    target: Type.String({ maxLength: 256 }),
    details: Type.Record(Type.String({ maxLength: 64 }), Type.Unknown()),
    prevHash: Type.String({ pattern: '^[0-9a-f]{64}$' }),
    hash: Type.String({ pattern: '^[0-9a-f]{64}$' }),
  },
  { additionalProperties: false },
);
export type AuditEntry = Static<typeof AuditEntry>;

export const AUDIT_BREAKS = ['sequence-gap', 'chain-broken', 'hash-mismatch', 'unreadable'] as const;
export type AuditBreak = (typeof AUDIT_BREAKS)[number];

export const AuditVerification = Type.Object(
  {
    ok: Type.Boolean(),
    /** Entries checked (all of them when ok). */
    checked: Type.Integer({ minimum: 0 }),
    /** Hash of the last entry when the chain is whole: record it elsewhere to detect a rewrite. */
    headHash: Type.Union([Type.String({ pattern: '^[0-9a-f]{64}$' }), Type.Null()]),
    firstBroken: Type.Union([
      Type.Object(
        {
          seq: Type.Integer({ minimum: 0 }),
          reason: Type.Union(AUDIT_BREAKS.map((r) => Type.Literal(r))),
          message: Type.String({ maxLength: 512 }),
        },
        { additionalProperties: false },
      ),
      Type.Null(),
    ]),
  },
  { additionalProperties: false },
);
export type AuditVerification = Static<typeof AuditVerification>;

export const AuditListQuery = Type.Object(
  {
    after: Type.Optional(Type.Integer({ minimum: 0 })),
    limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 1000 })),
  },
  { additionalProperties: false },
);
export type AuditListQuery = Static<typeof AuditListQuery>;

export const AuditListResponse = Type.Object(
  { entries: Type.Array(AuditEntry, { maxItems: 1000 }) },
  { additionalProperties: false },
);
export type AuditListResponse = Static<typeof AuditListResponse>;

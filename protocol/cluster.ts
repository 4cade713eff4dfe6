import { Type, type Static } from '@sinclair/typebox';

/**
 * What one controller tells the others sharing its database, as a NOTIFY payload on
 * `corral_changes`: which entry of their in-memory state to read again from the database.
 * The payload names the entry only; the database stays the truth, so a forged or stale
 * notification can at most cause a read.
 *  - `host`: a host's pins changed (enrolled, renewed, retired, decommissioned); `id` its host id.
 *  - `operator`: an operator credential was revoked (revoke, rotate); `id` the credential id.
 *  - `webhooks`: a webhook was added or removed; `id` its name.
 *  - `services`: a host's observed services were written by a controller that had nothing
 *    cached for it (the host came to it); `id` the host id. The others forget what they
 *    last wrote for it, so that they write its services again when it comes back.
 */
export const CLUSTER_CHANGE_KINDS = ['host', 'operator', 'webhooks', 'services'] as const;
export type ClusterChangeKind = (typeof CLUSTER_CHANGE_KINDS)[number];

/** A payload longer than this (characters) is not ours and is dropped unread. */
export const MAX_CLUSTER_CHANGE_CHARS = 256;

/** The envelope of every payload; `kind` is checked against CLUSTER_CHANGE_KINDS afterwards. */
export const ClusterChangeEnvelope = Type.Object(
  {
    kind: Type.String({ minLength: 1, maxLength: 32, pattern: '^[a-z][a-z0-9-]*$' }),
    id: Type.String({ minLength: 1, maxLength: 128, pattern: '^[A-Za-z0-9._:@-]+$' }),
    /** The sending controller's id: a controller ignores its own announcements. */
    from: Type.String({ minLength: 1, maxLength: 64, pattern: '^[A-Za-z0-9-]+$' }),
  },
  { additionalProperties: false },
);
export type ClusterChangeEnvelope = Static<typeof ClusterChangeEnvelope>;

export interface ClusterChange {
  readonly kind: ClusterChangeKind;
  readonly id: string;
}

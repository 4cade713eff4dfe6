import { Type, type Static } from '@sinclair/typebox';
import { Fingerprint, Name, Pem, Timestamp } from './common.js';

/**
 * What an operator may do. `admin` (operators, settings) implies every other scope; no other
 * scope implies any other.
 */
export const SCOPES = [
  'read',
  'metrics',
  'deploy',
  'update',
  'enroll',
  'decommission',
  'approve',
  'admin',
] as const;
export type Scope = (typeof SCOPES)[number];
export const Scope = Type.Union(SCOPES.map((s) => Type.Literal(s)));

export function isScope(value: string): value is Scope {
  return (SCOPES as readonly string[]).includes(value);
}

/** Whether a holder of `held` may use a route that needs `needed`. */
export function scopeAllows(held: readonly Scope[], needed: Scope): boolean {
  return held.includes('admin') || held.includes(needed);
}

export const OPERATOR_KINDS = ['token', 'cert'] as const;
export type OperatorKind = (typeof OPERATOR_KINDS)[number];

/** Longest lifetime an operator credential may be given, in seconds (about 10 years). */
export const MAX_OPERATOR_TTL_SECONDS = 3650 * 24 * 3600;

export const Scopes = Type.Array(Scope, { minItems: 1, maxItems: SCOPES.length, uniqueItems: true });

/** Admin API: `POST /v1/operators`. */
export const OperatorCreateRequest = Type.Object(
  {
    name: Name,
    scopes: Scopes,
    /** Lifetime; without it a token never expires and a certificate lives the CA's leaf default. */
    expiresInSeconds: Type.Optional(Type.Integer({ minimum: 60, maximum: MAX_OPERATOR_TTL_SECONDS })),
    /** Issue a client certificate (key made on the controller) instead of a bearer token. */
    cert: Type.Optional(Type.Boolean()),
  },
  { additionalProperties: false },
);
export type OperatorCreateRequest = Static<typeof OperatorCreateRequest>;

export const OperatorView = Type.Object(
  {
    name: Name,
    kind: Type.Union(OPERATOR_KINDS.map((k) => Type.Literal(k))),
    scopes: Scopes,
    state: Type.Union([Type.Literal('active'), Type.Literal('revoked'), Type.Literal('expired')]),
    createdAt: Timestamp,
    createdBy: Type.String({ maxLength: 200 }),
    expiresAt: Type.Union([Timestamp, Type.Null()]),
    revokedAt: Type.Union([Timestamp, Type.Null()]),
    /** The pinned certificate of a `cert` operator. */
    fingerprint: Type.Union([Fingerprint, Type.Null()]),
  },
  { additionalProperties: false },
);
export type OperatorView = Static<typeof OperatorView>;

export const OperatorCertificate = Type.Object(
  { caPem: Pem, certPem: Pem, keyPem: Pem, fingerprint: Fingerprint, caFingerprint: Fingerprint },
  { additionalProperties: false },
);
export type OperatorCertificate = Static<typeof OperatorCertificate>;

/** `POST /v1/operators` and `POST /v1/operators/:name/rotate`: the secret is shown this once. */
export const OperatorCreateResponse = Type.Object(
  {
    operator: OperatorView,
    token: Type.Optional(Type.String({ maxLength: 200 })),
    certificate: Type.Optional(OperatorCertificate),
  },
  { additionalProperties: false },
);
export type OperatorCreateResponse = Static<typeof OperatorCreateResponse>;

export const OperatorListResponse = Type.Object(
  { operators: Type.Array(OperatorView, { maxItems: 10_000 }) },
  { additionalProperties: false },
);
export type OperatorListResponse = Static<typeof OperatorListResponse>;

export const OperatorNameParams = Type.Object({ name: Name }, { additionalProperties: false });
export type OperatorNameParams = Static<typeof OperatorNameParams>;

/** `POST /v1/operators/:name/revoke`: the credentials revoked (all rows of that name). */
export const OperatorRevokeResponse = Type.Object(
  { operators: Type.Array(OperatorView, { maxItems: 10_000 }) },
  { additionalProperties: false },
);
export type OperatorRevokeResponse = Static<typeof OperatorRevokeResponse>;

/** The bundle files `operators create --cert --out-dir D` writes (all 0600, the dir 0700). */
export const OPERATOR_BUNDLE_FILES = { ca: 'ca.crt', cert: 'operator.crt', key: 'operator.key' } as const;

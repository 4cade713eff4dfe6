import { Type, type Static } from '@sinclair/typebox';
import { Address, Fingerprint, HostId, Labels, Name, Pem, Port, Timestamp } from './common.js';

/** Admin API: enroll a host and get its bundle (keys made on the controller). */
export const EnrollRequest = Type.Object(
  {
    name: Name,
    address: Address,
    agentPort: Type.Optional(Port),
    updaterPort: Type.Optional(Port),
    /** Extra SANs (DNS names or IPs) for the worker's server certificates. */
    sans: Type.Optional(Type.Array(Address, { maxItems: 32 })),
    labels: Type.Optional(Labels),
    /**
     * Take the name over from a host whose enrollment never completed (pending, bundle never
     * confirmed written, never seen); refused (409 CORRAL_ERR_REPLACE_REFUSED) for any other.
     */
    replace: Type.Optional(Type.Boolean()),
  },
  { additionalProperties: false },
);
export type EnrollRequest = Static<typeof EnrollRequest>;

const Identity = Type.Object(
  { certPem: Pem, keyPem: Pem, fingerprint: Fingerprint },
  { additionalProperties: false },
);

export const BundleManifestWire = Type.Object(
  {
    version: Type.Literal(1),
    hostId: HostId,
    hostName: Name,
    address: Address,
    agentPort: Port,
    updaterPort: Port,
    controller: Type.String({ maxLength: 300 }),
    /** Every live controller's worker API, `controller` first; absent with a single controller. */
    controllers: Type.Optional(
      Type.Array(Type.String({ maxLength: 300 }), { minItems: 1, maxItems: 16, uniqueItems: true }),
    ),
    syslog: Type.Optional(Type.String({ maxLength: 300 })),
    controllerClientFingerprint: Fingerprint,
    caFingerprint: Fingerprint,
  },
  { additionalProperties: false },
);

export const EnrollResponse = Type.Object(
  {
    hostId: HostId,
    name: Name,
    caPem: Pem,
    manifest: BundleManifestWire,
    agent: Identity,
    updater: Identity,
    /** The id of the pending host this enrollment replaced (`replace`), if it replaced one. */
    replaced: Type.Optional(HostId),
  },
  { additionalProperties: false },
);
export type EnrollResponse = Static<typeof EnrollResponse>;

/**
 * Admin API `POST /v1/hosts/:name/bundle-written` (after `enroll` wrote the bundle) and worker
 * API `POST /v1/bundle-written` (mTLS, after `agent join` wrote it): the bundle is on disk, so
 * the host is no longer one whose enrollment was cut short.
 */
export const BundleWrittenRequest = Type.Object({ hostId: HostId }, { additionalProperties: false });
export type BundleWrittenRequest = Static<typeof BundleWrittenRequest>;

export const BundleWrittenResponse = Type.Object(
  { hostId: HostId, bundleWrittenAt: Timestamp },
  { additionalProperties: false },
);
export type BundleWrittenResponse = Static<typeof BundleWrittenResponse>;

/** Admin API: make a single-use join token for a host name. */
export const TokenCreateRequest = Type.Object(
  {
    name: Name,
    ttlSeconds: Type.Optional(Type.Integer({ minimum: 60, maximum: 7 * 86_400 })),
    labels: Type.Optional(Labels),
  },
  { additionalProperties: false },
);
export type TokenCreateRequest = Static<typeof TokenCreateRequest>;

export const TokenView = Type.Object(
  {
    id: Type.String({ maxLength: 64 }),
    name: Name,
    createdAt: Timestamp,
    expiresAt: Timestamp,
    usedAt: Type.Union([Timestamp, Type.Null()]),
    revokedAt: Type.Union([Timestamp, Type.Null()]),
    state: Type.Union([
      Type.Literal('active'),
      Type.Literal('used'),
      Type.Literal('expired'),
      Type.Literal('revoked'),
    ]),
  },
  { additionalProperties: false },
);
export type TokenView = Static<typeof TokenView>;

export const TokenCreateResponse = Type.Object(
  {
    token: Type.String({ maxLength: 256 }),
    caPin: Type.String({ pattern: '^sha256:[0-9a-f]{64}$' }),
    controller: Type.String({ maxLength: 300 }),
    view: TokenView,
  },
  { additionalProperties: false },
);
export type TokenCreateResponse = Static<typeof TokenCreateResponse>;

/** Worker API (server-authenticated TLS, no client certificate yet): redeem a join token. */
export const JoinRequest = Type.Object(
  {
    token: Type.String({ minLength: 16, maxLength: 256 }),
    address: Address,
    agentPort: Type.Optional(Port),
    updaterPort: Type.Optional(Port),
    sans: Type.Optional(Type.Array(Address, { maxItems: 32 })),
    /** Labels the worker asks for (`worker install --label`), besides the token's; see join. */
    labels: Type.Optional(Labels),
    agentCsrPem: Pem,
    updaterCsrPem: Pem,
  },
  { additionalProperties: false },
);
export type JoinRequest = Static<typeof JoinRequest>;

export const JoinResponse = Type.Object(
  {
    hostId: HostId,
    name: Name,
    caPem: Pem,
    manifest: BundleManifestWire,
    agentCertPem: Pem,
    updaterCertPem: Pem,
  },
  { additionalProperties: false },
);
export type JoinResponse = Static<typeof JoinResponse>;

/** Worker API (mTLS): renew the caller's own certificate. */
export const RenewRequest = Type.Object(
  {
    role: Type.Union([Type.Literal('agent'), Type.Literal('updater')]),
    csrPem: Pem,
    /**
     * The certificate the worker holds now for this role (the one to keep pinned until the
     * new one is used). Only read for the updater's role: for the agent's, the controller
     * takes the certificate of the connection.
     */
    replaces: Type.Optional(Fingerprint),
  },
  { additionalProperties: false },
);
export type RenewRequest = Static<typeof RenewRequest>;

export const RenewResponse = Type.Object(
  { certPem: Pem, fingerprint: Fingerprint, notAfter: Timestamp },
  { additionalProperties: false },
);
export type RenewResponse = Static<typeof RenewResponse>;

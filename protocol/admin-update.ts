import { Type, type Static } from '@sinclair/typebox';
import { Name, Reason } from './common.js';
import { OPERATION_STATES } from './operations.js';
import { ReleaseVersion } from './release.js';
import { RolloutOptions } from './rollout.js';
import { HistoryEntry, Sha256Hex } from './updater-api.js';

/**
 * Admin API for releases on workers: `POST /v1/update` (the release `.tar.gz` as the raw body,
 * `application/octet-stream`) and `GET /v1/releases`.
 */
export const ADMIN_UPDATE_PATH = '/v1/update';
export const ADMIN_RELEASES_PATH = '/v1/releases';
/** History entries `GET /v1/releases` returns per host, newest last. */
export const ADMIN_RELEASE_HISTORY_ENTRIES = 20;

const QueryFlag = Type.Optional(Type.Boolean());

/** `hosts`: comma-separated host names; or `all`. */
export const AdminUpdateQuery = Type.Object(
  {
    hosts: Type.Optional(Type.String({ minLength: 1, maxLength: 64 * 1024 })),
    all: QueryFlag,
    includeSelf: QueryFlag,
    force: QueryFlag,
    dryRun: QueryFlag,
    /** The digest the sender computed; the upload is refused if it differs. */
    sha256: Type.Optional(Sha256Hex),
    /** The rollout (protocol/rollout.ts), flattened into the query. */
    maxParallel: RolloutOptions.properties.maxParallel,
    canary: RolloutOptions.properties.canary,
    canaryWaitMs: RolloutOptions.properties.canaryWaitMs,
    haltOnFailure: RolloutOptions.properties.haltOnFailure,
  },
  { additionalProperties: false },
);
export type AdminUpdateQuery = Static<typeof AdminUpdateQuery>;

/** `untouched`: the rollout halted before it sent this host anything. */
export const UPDATE_OUTCOMES = [
  'updated',
  'rolled-back',
  'failed',
  'self-updated',
  'dry-run',
  'untouched',
] as const;

export const AdminUpdateHostResult = Type.Object(
  {
    host: Name,
    outcome: Type.Union(UPDATE_OUTCOMES.map((o) => Type.Literal(o))),
    /** The release the host is on afterwards (null: none, or unknown after a failure). */
    version: Type.Union([ReleaseVersion, Type.Null()]),
    reason: Type.Union([Reason, Type.Null()]),
  },
  { additionalProperties: false },
);
export type AdminUpdateHostResult = Static<typeof AdminUpdateHostResult>;

export const AdminUpdateResponse = Type.Object(
  {
    /** Null for a dry run. */
    operationId: Type.Union([Type.String({ maxLength: 64 }), Type.Null()]),
    dryRun: Type.Boolean(),
    version: ReleaseVersion,
    sha256: Sha256Hex,
    hosts: Type.Array(AdminUpdateHostResult, { maxItems: 10_000 }),
    /** Every host ended on the new version (for a dry run: every host could be asked). */
    ok: Type.Boolean(),
    /** The operation's final state (absent for a dry run). */
    state: Type.Optional(Type.Union(OPERATION_STATES.map((s) => Type.Literal(s)))),
    /** Why it did not succeed as a whole (e.g. where it halted). */
    reason: Type.Optional(Type.Union([Reason, Type.Null()])),
  },
  { additionalProperties: false },
);
export type AdminUpdateResponse = Static<typeof AdminUpdateResponse>;

export const AdminReleasesQuery = Type.Object({ host: Type.Optional(Name) }, { additionalProperties: false });
export type AdminReleasesQuery = Static<typeof AdminReleasesQuery>;

const Version = Type.Union([ReleaseVersion, Type.Null()]);

export const AdminHostReleases = Type.Object(
  {
    host: Name,
    current: Version,
    previous: Version,
    /** The updater's own version (null when it could not be asked). */
    updater: Type.Union([Type.String({ maxLength: 64 }), Type.Null()]),
    busy: Type.Boolean(),
    /** The last ADMIN_RELEASE_HISTORY_ENTRIES entries, oldest first. */
    history: Type.Array(HistoryEntry, { maxItems: ADMIN_RELEASE_HISTORY_ENTRIES }),
    /** Why the host's updater could not be asked. */
    error: Type.Union([Reason, Type.Null()]),
  },
  { additionalProperties: false },
);
export type AdminHostReleases = Static<typeof AdminHostReleases>;

export const AdminReleasesResponse = Type.Object(
  { hosts: Type.Array(AdminHostReleases, { maxItems: 10_000 }) },
  { additionalProperties: false },
);
export type AdminReleasesResponse = Static<typeof AdminReleasesResponse>;

/** `POST /v1/hosts/:name/rollback`: the host's updater puts its previous release back. */
export const ADMIN_ROLLBACK_PATH = '/v1/hosts/:name/rollback';
export const adminRollbackPath = (host: string): string => `/v1/hosts/${encodeURIComponent(host)}/rollback`;

export const AdminRollbackParams = Type.Object({ name: Name }, { additionalProperties: false });
export type AdminRollbackParams = Static<typeof AdminRollbackParams>;

/** No fields yet: an empty JSON object. */
export const AdminRollbackBody = Type.Object({}, { additionalProperties: false });

export const AdminRollbackResponse = Type.Object(
  {
    operationId: Type.String({ maxLength: 64 }),
    host: Name,
    /** `rolled-back`, or `failed` when the updater tried and put the release it had back. */
    outcome: Type.Union([Type.Literal('rolled-back'), Type.Literal('failed')]),
    /** The release now current on the host. */
    current: Type.Union([ReleaseVersion, Type.Null()]),
    /** The release it rolled back from. */
    from: Type.Union([ReleaseVersion, Type.Null()]),
    reason: Type.Union([Reason, Type.Null()]),
    durationMs: Type.Integer({ minimum: 0 }),
  },
  { additionalProperties: false },
);
export type AdminRollbackResponse = Static<typeof AdminRollbackResponse>;

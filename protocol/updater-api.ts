import { Type, type Static } from '@sinclair/typebox';
import { Reason, Timestamp } from './common.js';
import { ReleaseVersion } from './release.js';

/**
 * The updater's mTLS API (controller-client only). Uploads are the raw `.tar.gz` as the body
 * (`application/octet-stream`), with version, digest and force in the query string.
 */
export const UPDATER_UPDATE_PATH = '/v1/update';
export const UPDATER_UPDATE_SELF_PATH = '/v1/update-self';
export const UPDATER_ROLLBACK_PATH = '/v1/rollback';
export const UPDATER_RELEASES_PATH = '/v1/releases';
export const RELEASE_CONTENT_TYPE = 'application/octet-stream';

/** Default cap on an uploaded release tarball, in bytes. */
export const DEFAULT_MAX_RELEASE_BYTES = 256 * 1024 * 1024;
/** Default cap on what a release may unpack to, in bytes (guards against gzip bombs). */
export const DEFAULT_MAX_EXTRACTED_BYTES = 1024 * 1024 * 1024;
/** Environment variable through which an updater learns the version of its own release. */
export const UPDATER_VERSION_ENV = 'CORRAL_UPDATER_RELEASE_VERSION';
/** Largest JSON answer the updater sends, in bytes (bounded history, bounded output). */
export const MAX_UPDATER_RESPONSE_BYTES = 1024 * 1024;
/** Longest tail of the agent's output carried in an answer, in bytes. */
export const MAX_AGENT_OUTPUT_BYTES = 4096;

export const Sha256Hex = Type.String({ pattern: '^[0-9a-f]{64}$' });

export const UpdateQuery = Type.Object(
  {
    version: ReleaseVersion,
    sha256: Sha256Hex,
    force: Type.Optional(Type.Boolean()),
  },
  { additionalProperties: false },
);
export type UpdateQuery = Static<typeof UpdateQuery>;

const Version = Type.Union([ReleaseVersion, Type.Null()]);
const Text = Type.Union([Reason, Type.Null()]);
const AgentOutput = Type.Union([Type.String({ maxLength: MAX_AGENT_OUTPUT_BYTES * 2 }), Type.Null()]);

/**
 * The answer to a completed update: `updated` (new release healthy), `rolled-back` (it was not;
 * the previous release runs again), `failed` (the previous release did not come back either).
 */
export const UpdateResponse = Type.Object(
  {
    outcome: Type.Union([Type.Literal('updated'), Type.Literal('rolled-back'), Type.Literal('failed')]),
    version: ReleaseVersion,
    /** The release active after the update. */
    current: Version,
    previous: Version,
    reason: Text,
    /** Tail of the agent's output when it failed its health check. */
    agentOutput: AgentOutput,
    durationMs: Type.Integer({ minimum: 0 }),
  },
  { additionalProperties: false },
);
export type UpdateResponse = Static<typeof UpdateResponse>;

export const RollbackResponse = Type.Object(
  {
    outcome: Type.Union([Type.Literal('rolled-back'), Type.Literal('failed')]),
    current: Version,
    previous: Version,
    reason: Text,
    agentOutput: AgentOutput,
    durationMs: Type.Integer({ minimum: 0 }),
  },
  { additionalProperties: false },
);
export type RollbackResponse = Static<typeof RollbackResponse>;

/** 202: the new updater release is in place and the updater is restarting into it. */
export const SelfUpdateResponse = Type.Object(
  {
    outcome: Type.Literal('self-updating'),
    version: ReleaseVersion,
    from: Type.String({ maxLength: 64 }),
  },
  { additionalProperties: false },
);
export type SelfUpdateResponse = Static<typeof SelfUpdateResponse>;

export const HISTORY_OUTCOMES = [
  'updated',
  'rolled-back',
  'failed',
  'refused',
  'interrupted',
  'recovered',
  'rollback',
  'self-updated',
] as const;
export type HistoryOutcome = (typeof HISTORY_OUTCOMES)[number];

/**
 * One line of a worker's release history. `rolled-back` and `failed` mark the version as
 * refused next time (unless forced); `recovered` is a rollback done at startup after the updater
 * stopped before confirming a release, and does not.
 */
export const HistoryEntry = Type.Object(
  {
    time: Timestamp,
    version: ReleaseVersion,
    from: Version,
    outcome: Type.Union(HISTORY_OUTCOMES.map((o) => Type.Literal(o))),
    reason: Text,
    forced: Type.Optional(Type.Boolean()),
  },
  { additionalProperties: false },
);
export type HistoryEntry = Static<typeof HistoryEntry>;
/** History entries kept per worker; the oldest are dropped. */
export const MAX_HISTORY_ENTRIES = 200;

/** A release's tarball digest; null when unknown (its journal entry was rebuilt from the tree). */
const ReleaseDigest = Type.Union([Sha256Hex, Type.Null()]);

export const InstalledRelease = Type.Object(
  {
    version: ReleaseVersion,
    sha256: ReleaseDigest,
    installedAt: Timestamp,
  },
  { additionalProperties: false },
);
export type InstalledRelease = Static<typeof InstalledRelease>;

export const ReleasesResponse = Type.Object(
  {
    current: Version,
    previous: Version,
    releases: Type.Array(
      Type.Object(
        {
          version: ReleaseVersion,
          sha256: ReleaseDigest,
          installedAt: Timestamp,
          active: Type.Boolean(),
        },
        { additionalProperties: false },
      ),
      { maxItems: 64 },
    ),
    history: Type.Array(HistoryEntry, { maxItems: MAX_HISTORY_ENTRIES }),
    updater: Type.Object(
      {
        version: Type.String({ minLength: 1, maxLength: 64 }),
        pid: Type.Integer({ minimum: 1 }),
      },
      { additionalProperties: false },
    ),
    /** An update, rollback or self-update is running right now. */
    busy: Type.Boolean(),
    /**
     * How long an update may take on this updater after its upload, in ms: the health check's
     * timeout and the watch period after it (absent from updaters older than the watch).
     */
    timing: Type.Optional(
      Type.Object(
        {
          healthTimeoutMs: Type.Integer({ minimum: 0 }),
          watchMs: Type.Integer({ minimum: 0 }),
        },
        { additionalProperties: false },
      ),
    ),
  },
  { additionalProperties: false },
);
export type ReleasesResponse = Static<typeof ReleasesResponse>;

/* Files the updater keeps under `ROOT/.updater/` (written atomically). */

/** What an update or rollback in flight had done when it was last journaled. */
export const UpdateIntent = Type.Object(
  {
    id: Type.String({ pattern: '^[0-9a-f]{8,32}$' }),
    kind: Type.Union([Type.Literal('update'), Type.Literal('rollback')]),
    /**
     * `staging`: receiving or unpacking; `current` not touched yet. `activating`: the release
     * is in `releases/`, and `current` may already point at it; health not confirmed.
     * `watching`: health was confirmed and the watch period after it is running; a restarted
     * updater treats it like `activating` (the release was never confirmed for good).
     */
    phase: Type.Union([Type.Literal('staging'), Type.Literal('activating'), Type.Literal('watching')]),
    from: Version,
    to: ReleaseVersion,
    startedAt: Timestamp,
    /**
     * An installed copy of `to` that this update replaces: it is moved to
     * `.staging-<id>/replaced` before the new tree takes its place, and put back (with this
     * entry) when the update does not end `updated`.
     */
    replaced: Type.Optional(InstalledRelease),
  },
  { additionalProperties: false },
);
export type UpdateIntent = Static<typeof UpdateIntent>;

export const UpdaterStateFile = Type.Object(
  {
    version: Type.Literal(1),
    /** The release active before `current`: where a rollback goes. */
    previous: Version,
    /** Releases in `releases/` that were confirmed healthy at least once. */
    installed: Type.Array(InstalledRelease, { maxItems: 64 }),
    intent: Type.Union([UpdateIntent, Type.Null()]),
    /** The updater's own releases (`self/releases/`). */
    self: Type.Object(
      { installed: Type.Array(InstalledRelease, { maxItems: 64 }) },
      { additionalProperties: false },
    ),
  },
  { additionalProperties: false },
);
export type UpdaterStateFile = Static<typeof UpdaterStateFile>;

export const HistoryFile = Type.Object(
  {
    version: Type.Literal(1),
    entries: Type.Array(HistoryEntry, { maxItems: MAX_HISTORY_ENTRIES }),
  },
  { additionalProperties: false },
);
export type HistoryFile = Static<typeof HistoryFile>;

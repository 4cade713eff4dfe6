import { Type, type Static } from '@sinclair/typebox';

/**
 * Release versions: semver-ish and safe as a directory name (no `/`, never `.` or `..`, no
 * leading dot or dash), at most 64 characters.
 */
export const RELEASE_VERSION_RE = /^[0-9A-Za-z](?:[0-9A-Za-z._+-]{0,62}[0-9A-Za-z])?$/;
export const ReleaseVersion = Type.String({
  pattern: RELEASE_VERSION_RE.source,
  minLength: 1,
  maxLength: 64,
});

/** The manifest inside every release tarball, at its root. */
export const RELEASE_MANIFEST_FILE = 'manifest.json';
/** The file `corral controller release pack DIR` reads: the manifest plus its include list. */
export const RELEASE_SOURCE_FILE = 'corral-release.json';
/** Largest manifest (or source manifest) accepted, in bytes. */
export const MAX_RELEASE_MANIFEST_BYTES = 64 * 1024;

/**
 * Placeholders a start command may use; they are expanded on the worker. `release` is the
 * release's own directory (also the process's cwd).
 */
export const START_PLACEHOLDERS = ['release', 'version', 'root', 'stateDir', 'agentStateDir'] as const;
export type StartPlaceholder = (typeof START_PLACEHOLDERS)[number];

const Arg = Type.String({ maxLength: 4096 });

/** How to start a process from a release: run with cwd = the release dir, no shell. */
export const StartSpec = Type.Object(
  {
    command: Type.String({ minLength: 1, maxLength: 4096 }),
    args: Type.Array(Arg, { maxItems: 128 }),
  },
  { additionalProperties: false },
);
export type StartSpec = Static<typeof StartSpec>;

/** A path inside a release: relative, `/`-separated, no `.`/`..` segments, no empty segments. */
export const RELEASE_PATH_RE = /^(?!\.{1,2}(?:\/|$))(?!.*\/\.{1,2}(?:\/|$))[^/\0]+(?:\/[^/\0]+)*$/;
const IncludePath = Type.String({ pattern: RELEASE_PATH_RE.source, minLength: 1, maxLength: 1024 });

const Include = Type.Array(IncludePath, { minItems: 1, maxItems: 1024 });
/** Simple patterns: `*` matches within one path segment, `**` across segments. */
const Exclude = Type.Array(Type.String({ minLength: 1, maxLength: 1024 }), { maxItems: 1024 });

/** `manifest.json` in a release tarball. */
export const ReleaseManifest = Type.Object(
  {
    version: ReleaseVersion,
    /** Starts the agent from this release. */
    start: StartSpec,
    /**
     * Starts the updater from this release (for `update-self`); the updater appends its own
     * serve options (state dir, root, listen address) to these arguments.
     */
    updater: Type.Optional(StartSpec),
    /**
     * Starts the log forwarder from this release; an updater that supervises its children
     * runs it beside the agent (and restarts it into each new release).
     */
    forwarder: Type.Optional(StartSpec),
    /** What was packed, as listed in the source manifest. */
    include: Include,
    createdBy: Type.Optional(Type.String({ maxLength: 256 })),
  },
  { additionalProperties: false },
);
export type ReleaseManifest = Static<typeof ReleaseManifest>;

/** `corral-release.json` in the directory being packed. */
export const ReleaseSourceManifest = Type.Object(
  {
    /** When present it must equal `--version`. */
    version: Type.Optional(ReleaseVersion),
    start: StartSpec,
    updater: Type.Optional(StartSpec),
    forwarder: Type.Optional(StartSpec),
    include: Include,
    /** Paths under included directories to leave out (e.g. test fixtures with keys). */
    exclude: Type.Optional(Exclude),
    createdBy: Type.Optional(Type.String({ maxLength: 256 })),
  },
  { additionalProperties: false },
);
export type ReleaseSourceManifest = Static<typeof ReleaseSourceManifest>;

/**
 * Whether a symbolic link at `linkPath` (a release path) pointing at `target` stays inside the
 * release tree. Only relative targets of the form `(../)*rest`, where `rest` has no `..`, and
 * no more leading `..` than the link's own depth: so the climb crosses only real directories
 * and the lexical answer is the real one.
 */
export function linkTargetStaysInside(linkPath: string, target: string): boolean {
  if (target === '' || target.startsWith('/') || target.includes('\0') || target.includes('\\')) return false;
  const depth = linkPath.split('/').length - 1;
  const parts = target.split('/').filter((p) => p !== '' && p !== '.');
  let ups = 0;
  while (parts[ups] === '..') ups++;
  if (parts.slice(ups).includes('..')) return false;
  return ups <= depth;
}

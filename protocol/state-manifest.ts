import { Type, type Static } from '@sinclair/typebox';
import { MAX_APPLY_SERVICES } from './agent-api.js';
import { Address } from './common.js';

/**
 * `state-manifest.json` in a daemon's state dir: which state files must exist there, so a
 * daemon can tell a file that was lost (it refuses to start) from one never written (a first
 * start). Written durably before the files it names are relied on.
 */
export const STATE_MANIFEST_FILE = 'state-manifest.json';
export const MAX_STATE_MANIFEST_BYTES = 256 * 1024;

/** A path inside the state dir: relative, `/`-separated, no `.` or `..` segments. */
export const StateFilePath = Type.String({
  minLength: 1,
  maxLength: 200,
  pattern: '^(?!.*(?:^|/)\\.{1,2}(?:/|$))[A-Za-z0-9._-]+(?:/[A-Za-z0-9._-]+)*$',
});

export const ControllerStateManifest = Type.Object(
  {
    version: Type.Literal(1),
    daemon: Type.Literal('controller'),
    /** False while `controller init` is creating the files; serve refuses such a state dir. */
    complete: Type.Boolean(),
    /** Random, also stored in the database (setting `state_id`): a database from elsewhere is refused. */
    stateId: Type.String({ pattern: '^[0-9a-f]{32}$' }),
    /** The CA this state dir was initialized with (null until init has made it). */
    caFingerprint: Type.Union([Type.String({ pattern: '^[0-9a-f]{64}$' }), Type.Null()]),
    /** The addresses of the first init, kept here so `--reinitialize` can make a database again. */
    addresses: Type.Array(Address, { maxItems: 64 }),
    files: Type.Array(StateFilePath, { maxItems: 64 }),
    /**
     * Where the database is: absent or `sqlite`, the file `corral.db` here; `postgres`, a
     * PostgreSQL database that `serve` must be told (`--database`; the URL is never kept here).
     */
    database: Type.Optional(Type.Union([Type.Literal('sqlite'), Type.Literal('postgres')])),
  },
  { additionalProperties: false },
);
export type ControllerStateManifest = Static<typeof ControllerStateManifest>;

/** Per service: its record and its log offsets; plus the agent's own files. */
export const MAX_AGENT_STATE_FILES = 2 * MAX_APPLY_SERVICES + 16;

export const AgentStateManifest = Type.Object(
  {
    version: Type.Literal(1),
    daemon: Type.Literal('agent'),
    /** Sorted; a file is added after its first durable write and removed before it is deleted. */
    files: Type.Array(StateFilePath, { maxItems: MAX_AGENT_STATE_FILES }),
  },
  { additionalProperties: false },
);
export type AgentStateManifest = Static<typeof AgentStateManifest>;

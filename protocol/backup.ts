import { Type, type Static } from '@sinclair/typebox';
import { StateFilePath } from './state-manifest.js';

/**
 * A controller backup (`corral controller backup`): the state dir's files (a consistent
 * snapshot of the database, the CA, the controller's certificates and keys, the admin token
 * and the state manifest) packed into one archive and encrypted with a key derived from a
 * passphrase. The encrypted framing is kit/backup-cipher.ts; the archive inside it is
 * kit/backup-archive.ts: a 4-byte big-endian length, this manifest as JSON, then each file's
 * bytes in the manifest's order.
 */
export const BACKUP_CONTENT_TYPE = 'application/vnd.corral.backup';
/** The answer's header carrying the backup's manifest (base64url JSON), for the CLI's summary. */
export const BACKUP_MANIFEST_HEADER = 'corral-backup-manifest';
/** The suggested file name's suffix. */
export const BACKUP_FILE_SUFFIX = '.corral-backup';

/** Shortest passphrase a backup is made with (restore takes any). */
export const MIN_BACKUP_PASSPHRASE_CHARS = 8;
export const MAX_BACKUP_PASSPHRASE_BYTES = 1024;
export const MAX_BACKUP_MANIFEST_BYTES = 64 * 1024;
/** Larger than any PEM, token or state manifest a controller writes. */
export const MAX_BACKUP_SMALL_FILE_BYTES = 256 * 1024;
/** The database snapshot's bound, in bytes (64 GiB). */
export const MAX_BACKUP_DATABASE_BYTES = 64 * 1024 ** 3;

export interface BackupFileRule {
  readonly path: string;
  readonly maxBytes: number;
  /** The mode restore writes it with, whatever the archive says. */
  readonly mode: number;
}

/**
 * Every file a backup may hold, and nothing else: restore refuses any other path. The
 * database is first so a backup's bulk streams straight after the manifest.
 */
export const BACKUP_FILES: readonly BackupFileRule[] = [
  { path: 'corral.db', maxBytes: MAX_BACKUP_DATABASE_BYTES, mode: 0o600 },
  { path: 'state-manifest.json', maxBytes: MAX_BACKUP_SMALL_FILE_BYTES, mode: 0o600 },
  { path: 'ca/ca.crt', maxBytes: MAX_BACKUP_SMALL_FILE_BYTES, mode: 0o644 },
  { path: 'ca/ca.key', maxBytes: MAX_BACKUP_SMALL_FILE_BYTES, mode: 0o600 },
  { path: 'tls/controller.crt', maxBytes: MAX_BACKUP_SMALL_FILE_BYTES, mode: 0o644 },
  { path: 'tls/controller.key', maxBytes: MAX_BACKUP_SMALL_FILE_BYTES, mode: 0o600 },
  { path: 'tls/controller-client.crt', maxBytes: MAX_BACKUP_SMALL_FILE_BYTES, mode: 0o644 },
  { path: 'tls/controller-client.key', maxBytes: MAX_BACKUP_SMALL_FILE_BYTES, mode: 0o600 },
  { path: 'admin-token', maxBytes: MAX_BACKUP_SMALL_FILE_BYTES, mode: 0o600 },
];

export const BackupRequest = Type.Object(
  {
    /** Never logged, never stored: only the key derived from it is used, for this answer. */
    passphrase: Type.String({
      minLength: MIN_BACKUP_PASSPHRASE_CHARS,
      maxLength: MAX_BACKUP_PASSPHRASE_BYTES,
    }),
  },
  { additionalProperties: false },
);
export type BackupRequest = Static<typeof BackupRequest>;

export const BackupFileEntry = Type.Object(
  {
    path: StateFilePath,
    bytes: Type.Integer({ minimum: 0, maximum: MAX_BACKUP_DATABASE_BYTES }),
  },
  { additionalProperties: false },
);
export type BackupFileEntry = Static<typeof BackupFileEntry>;

/** The archive's first record. */
export const BackupManifest = Type.Object(
  {
    format: Type.Literal('corral-controller-backup'),
    version: Type.Literal(1),
    /** ISO 8601, the controller's clock when the snapshot was taken. */
    createdAt: Type.String({ format: 'date-time', maxLength: 64 }),
    stateId: Type.String({ pattern: '^[0-9a-f]{32}$' }),
    caFingerprint: Type.String({ pattern: '^[0-9a-f]{64}$' }),
    /** The audit chain's head when the snapshot was taken (seq 0 and the genesis hash when empty). */
    auditSeq: Type.Integer({ minimum: 0 }),
    auditHead: Type.String({ pattern: '^[0-9a-f]{64}$' }),
    files: Type.Array(BackupFileEntry, { minItems: 1, maxItems: 32 }),
  },
  { additionalProperties: false },
);
export type BackupManifest = Static<typeof BackupManifest>;

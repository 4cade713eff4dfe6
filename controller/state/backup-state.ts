import { randomBytes } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { readFile, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { PassThrough, type Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { ensurePrivateDir } from '../../pki/index.js';
import { createBackupEncryptor, type EncryptOptions } from '../../kit/backup-cipher.js';
import { packBackup, type PackSource } from '../../kit/backup-archive.js';
import { BACKUP_FILES, MAX_BACKUP_SMALL_FILE_BYTES, type BackupManifest } from '../../protocol/backup.js';
import { AUDIT_GENESIS_HASH } from '../audit/audit-log.js';
import type { Clock } from '../clock.js';
import type { DatabaseTarget } from '../db/database-target.js';
import { auditHeadOf, snapshotTo } from '../db/snapshot-database.js';
import { ControllerError, ControllerErrorCode } from '../errors.js';
import { readControllerManifest } from './controller-manifest.js';
import type { StatePaths } from './state-paths.js';

export interface BackupStream {
  readonly manifest: BackupManifest;
  /** The encrypted backup; the snapshot's temp file is removed once it ends, fails or is destroyed. */
  readonly stream: Readable;
}

async function readSmall(path: string): Promise<Buffer> {
  const { size } = await stat(path);
  if (size > MAX_BACKUP_SMALL_FILE_BYTES) {
    throw new ControllerError(
      ControllerErrorCode.STATE_DAMAGED,
      `${path} is larger than a state file can be`,
      {
        file: path,
      },
    );
  }
  return readFile(path);
}

/**
 * An online, consistent backup of a controller state dir: the database through VACUUM INTO,
 * or from PostgreSQL one repeatable-read export (snapshotTo), into an SQLite file in `run/`
 * of the state dir (so on the same disk), the state manifest, the CA, the
 * controller's certificates and keys and the admin token (read whole before anything is sent,
 * so nothing can change under the stream), packed and encrypted with `passphrase` (which is
 * not kept). Throws CORRAL_ERR_STATE_MISSING when the state dir has no complete manifest.
 */
export async function createBackupStream(o: {
  readonly paths: StatePaths;
  /** Where the database is (default: the state dir's `corral.db`). */
  readonly database?: DatabaseTarget | undefined;
  readonly clock: Clock;
  readonly passphrase: string;
  readonly encryption?: EncryptOptions;
}): Promise<BackupStream> {
  const { paths } = o;
  const read = await readControllerManifest(paths);
  if (read.kind !== 'ok' || !read.manifest.complete || read.manifest.caFingerprint === null) {
    throw new ControllerError(
      ControllerErrorCode.STATE_MISSING,
      `${paths.root} has no complete state manifest`,
    );
  }
  const state = read.manifest;
  await ensurePrivateDir(paths.runDir);
  const snapshot = join(paths.runDir, `backup-${randomBytes(6).toString('hex')}.db`);
  const cleanup = (): Promise<void> => rm(snapshot, { force: true });
  try {
    const createdAt = new Date(o.clock.now()).toISOString();
    await snapshotTo(o.database ?? { kind: 'sqlite', path: paths.database }, snapshot);
    const head = await auditHeadOf(snapshot);
    const small = new Map<string, Buffer>();
    for (const rule of BACKUP_FILES) {
      if (rule.path !== 'corral.db') small.set(rule.path, await readSmall(join(paths.root, rule.path)));
    }
    const dbBytes = (await stat(snapshot)).size;
    const sources: PackSource[] = BACKUP_FILES.map((rule) => {
      const bytes = small.get(rule.path);
      return bytes
        ? {
            path: rule.path,
            bytes: bytes.length,
            read: async function* () {
              yield bytes;
            },
          }
        : { path: rule.path, bytes: dbBytes, read: () => createReadStream(snapshot) };
    });
    const manifest: BackupManifest = {
      format: 'corral-controller-backup',
      version: 1,
      createdAt,
      stateId: state.stateId,
      caFingerprint: state.caFingerprint ?? '',
      auditSeq: head?.seq ?? 0,
      auditHead: head?.hash ?? AUDIT_GENESIS_HASH,
      files: sources.map((s) => ({ path: s.path, bytes: s.bytes })),
    };
    const encryptor = await createBackupEncryptor(o.passphrase, o.encryption);
    const out = new PassThrough();
    pipeline(packBackup(manifest, sources), encryptor, out).then(cleanup, async (e: unknown) => {
      await cleanup();
      out.destroy(
        e instanceof Error
          ? e
          : new ControllerError(ControllerErrorCode.WRITE_FAILED, `backup failed: ${String(e)}`),
      );
    });
    out.once('close', () => void cleanup());
    return { manifest, stream: out };
  } catch (e: unknown) {
    await cleanup();
    throw e;
  }
}

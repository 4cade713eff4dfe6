import { randomBytes } from 'node:crypto';
import { link, open, readdir, rm, stat, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { ensurePrivateDir, PRIVATE_FILE_MODE, syncDir } from '../../pki/index.js';
import type { EncryptOptions } from '../../kit/backup-cipher.js';
import { BACKUP_FILE_SUFFIX, type BackupManifest } from '../../protocol/backup.js';
import type { Clock } from '../clock.js';
import type { DatabaseTarget } from '../db/database-target.js';
import { createBackupStream } from './backup-state.js';
import type { StatePaths } from './state-paths.js';

/** `corral-20261202T171258.123Z.corral-backup`: sorting the names sorts the backups by time (UTC). */
export const BACKUP_NAME_RE = /^corral-\d{8}T\d{6}\.\d{3}Z\.corral-backup$/;
const TEMP_PREFIX = '.corral-backup-';
/** Names tried when a backup of the same millisecond is already there (each 1 ms later). */
const MAX_NAME_TRIES = 100;

/** The file name of a backup taken at `ms`. */
export function backupFileName(ms: number): string {
  const iso = new Date(ms).toISOString(); // 2026-12-02T17:12:58.123Z
  return `corral-${iso.replace(/[-:]/g, '')}${BACKUP_FILE_SUFFIX}`;
}

export interface WrittenBackup {
  readonly file: string;
  readonly bytes: number;
  readonly manifest: BackupManifest;
}

/**
 * Writes one encrypted backup of the state dir into `dir` (made 0700 when missing): a temp
 * file (0600 before any byte), fsynced, then linked to its timestamped name (never over
 * another backup) and the directory fsynced. On any failure the temp file is removed and no
 * backup name appears. Throws what createBackupStream or the file system throws.
 */
export async function writeBackupFile(o: {
  readonly dir: string;
  readonly paths: StatePaths;
  readonly database?: DatabaseTarget | undefined;
  readonly clock: Clock;
  readonly passphrase: string;
  readonly encryption?: EncryptOptions | undefined;
}): Promise<WrittenBackup> {
  await ensurePrivateDir(o.dir);
  const backup = await createBackupStream({
    paths: o.paths,
    database: o.database,
    clock: o.clock,
    passphrase: o.passphrase,
    ...(o.encryption && { encryption: o.encryption }),
  });
  const tmp = join(o.dir, `${TEMP_PREFIX}${randomBytes(6).toString('hex')}.tmp`);
  let bytes = 0;
  try {
    const fh = await open(tmp, 'wx', PRIVATE_FILE_MODE);
    try {
      await fh.chmod(PRIVATE_FILE_MODE);
      await pipeline(backup.stream, async (chunks: AsyncIterable<Buffer>) => {
        for await (const chunk of chunks) {
          await fh.write(chunk);
          bytes += chunk.length;
        }
      });
      await fh.sync();
    } finally {
      await fh.close();
    }
    const startMs = Date.parse(backup.manifest.createdAt);
    for (let i = 0; ; i += 1) {
      const file = join(o.dir, backupFileName(startMs + i));
      try {
        await link(tmp, file);
      } catch (e: unknown) {
        if ((e as NodeJS.ErrnoException).code === 'EEXIST' && i + 1 < MAX_NAME_TRIES) continue;
        throw e;
      }
      await unlink(tmp);
      await syncDir(o.dir);
      return { file, bytes, manifest: backup.manifest };
    }
  } catch (e: unknown) {
    backup.stream.destroy();
    await rm(tmp, { force: true });
    throw e;
  }
}

/** The backups in `dir` (by name, oldest first); other files are not ours and are left alone. */
export async function listBackupFiles(dir: string): Promise<string[]> {
  return (await readdir(dir)).filter((n) => BACKUP_NAME_RE.test(n)).sort();
}

/** A temp file this old is a crashed write's leftover, not one in progress, in ms. */
const STALE_TEMP_MS = 60 * 60_000;

/**
 * Deletes the oldest backups in `dir` beyond the newest `keep`, and the temp files of writes a
 * crash cut off (older than STALE_TEMP_MS); returns the backup names deleted.
 */
export async function pruneBackupFiles(dir: string, keep: number, nowMs = Date.now()): Promise<string[]> {
  const names = await listBackupFiles(dir);
  const old = names.slice(0, Math.max(0, names.length - keep));
  for (const name of old) await rm(join(dir, name), { force: true });
  for (const name of (await readdir(dir)).filter((n) => n.startsWith(TEMP_PREFIX) && n.endsWith('.tmp'))) {
    const st = await stat(join(dir, name)).catch(() => undefined /* ENOENT: a write just finished */);
    if (st && nowMs - st.mtimeMs > STALE_TEMP_MS) await rm(join(dir, name), { force: true });
  }
  if (old.length > 0) await syncDir(dir);
  return old;
}

import { createReadStream } from 'node:fs';
import { lstat, mkdir, readdir, rename, rm, rmdir, stat } from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { PRIVATE_DIR_MODE, syncDir } from '../../pki/index.js';
import { extractBackup } from '../../kit/backup-archive.js';
import { createBackupDecryptor } from '../../kit/backup-cipher.js';
import { livePidFile } from '../../kit/pid-file.js';
import { ownedTempName, removeStaleTemps } from '../../kit/stale-temps.js';
import type { BackupManifest } from '../../protocol/backup.js';
import { CorralError, ErrorCode } from '../../protocol/errors.js';
import { AUDIT_GENESIS_HASH, createAuditLog } from '../audit/audit-log.js';
import { systemClock, type Clock } from '../clock.js';
import { inspectControllerState } from './check-state.js';
import { newManifest, readControllerManifest, writeControllerManifest } from './controller-manifest.js';
import { copyDatabase } from '../db/copy-database.js';
import { describeDatabaseTarget, type DatabaseTarget } from '../db/database-target.js';
import { openDatabase } from '../db/open-database.js';
import { ControllerErrorCode, isControllerError } from '../errors.js';
import { statePaths } from './state-paths.js';

export interface RestoreOptions {
  /** The backup file (`corral controller backup --out`). */
  readonly file: string;
  /** Where the state goes; it must be missing or empty unless `force`. */
  readonly stateDir: string;
  readonly passphrase: string;
  /** Replace a non-empty state dir: it is moved aside (`<dir>.before-restore-<time>`), not deleted. */
  readonly force?: boolean;
  readonly clock?: Clock;
  /** Called as plaintext bytes are written (for a progress line). */
  readonly progress?: (bytes: number) => void;
  /**
   * Restore the database into this one instead of the state dir's `corral.db`: a PostgreSQL
   * database that holds no controller rows (it is migrated first). Whatever database the
   * backup came from.
   */
  readonly database?: DatabaseTarget | undefined;
}

export interface RestoreResult {
  readonly stateDir: string;
  readonly manifest: BackupManifest;
  /** Audit entries checked (the whole chain). */
  readonly auditEntries: number;
  /** Where the state dir that was there went (with `force`), else null. */
  readonly movedAside: string | null;
}

const refused = (message: string): CorralError => new CorralError(ErrorCode.RESTORE_REFUSED, message);
const damaged = (message: string): CorralError =>
  new CorralError(ErrorCode.BACKUP_DAMAGED, `the backup is damaged: ${message}`);

/** `missing`, `empty` or `full`; refuses a path that is not a directory. */
async function targetState(dir: string): Promise<'missing' | 'empty' | 'full'> {
  try {
    const st = await lstat(dir);
    if (!st.isDirectory()) throw refused(`${dir} exists and is not a directory; nothing was changed`);
  } catch (e: unknown) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return 'missing';
    throw e;
  }
  return (await readdir(dir)).length === 0 ? 'empty' : 'full';
}

/**
 * Checks a restored state dir as `serve` would (state/check-state.ts: every file present and
 * holding what init wrote, certificates from this CA, keys matching them, the database passing
 * quick_check with this state's id), that it is the state the backup's manifest names, and
 * that the whole audit chain verifies up to the manifest's head. Throws CORRAL_ERR_BACKUP_DAMAGED.
 */
async function validate(dir: string, manifest: BackupManifest, clock: Clock): Promise<number> {
  const paths = statePaths(dir);
  const read = await readControllerManifest(paths);
  if (read.kind !== 'ok')
    throw damaged(
      read.kind === 'damaged' ? `state-manifest.json ${read.problem.problem}` : 'it has no state manifest',
    );
  const state = read.manifest;
  if (
    !state.complete ||
    state.stateId !== manifest.stateId ||
    state.caFingerprint !== manifest.caFingerprint
  ) {
    throw damaged('its state manifest is not the one its archive names');
  }
  const inspection = await inspectControllerState(paths, { manifest: state, missingOk: false });
  const db = inspection.db;
  if (inspection.problems.length > 0 || !db) {
    await db?.destroy();
    throw damaged(inspection.problems.map((p) => `${p.file.slice(dir.length + 1)} ${p.problem}`).join('; '));
  }
  try {
    const v = await createAuditLog({ db, clock }).verify();
    if (!v.ok) {
      throw damaged(
        `its audit chain breaks at entry ${v.firstBroken?.seq ?? '?'}: ${v.firstBroken?.message ?? ''}`,
      );
    }
    if (v.checked !== manifest.auditSeq || (v.headHash ?? AUDIT_GENESIS_HASH) !== manifest.auditHead) {
      throw damaged(
        `its audit chain ends at ${v.checked}, not at entry ${manifest.auditSeq} as its manifest says`,
      );
    }
    return v.checked;
  } finally {
    await db.destroy();
  }
}

/**
 * Puts the validated snapshot (`corral.db` in `staging`) where the restored controller will
 * find it, and says so in its state manifest: for the state dir's own file, it stays; for
 * PostgreSQL, it is migrated, copied into the target in one transaction and removed from
 * `staging`. Throws CORRAL_ERR_RESTORE_REFUSED when the target holds controller rows.
 */
/** fsyncs `dir` and every directory under it, deepest first. */
async function syncTree(dir: string): Promise<void> {
  for (const entry of await readdir(dir, { withFileTypes: true }))
    if (entry.isDirectory()) await syncTree(join(dir, entry.name));
  await syncDir(dir);
}

async function placeDatabase(staging: string, database: DatabaseTarget | undefined): Promise<void> {
  const paths = statePaths(staging);
  const read = await readControllerManifest(paths);
  if (read.kind !== 'ok') throw damaged('it has no state manifest');
  const kind = database?.kind ?? 'sqlite';
  if (kind === 'postgres' && database) {
    const snapshot = await openDatabase(paths.database, { create: false });
    try {
      const target = await openDatabase(database);
      try {
        await target.transaction().execute((trx) => copyDatabase(snapshot, trx));
      } catch (e: unknown) {
        if (isControllerError(e, ControllerErrorCode.STATE_INVALID)) {
          throw refused(`${describeDatabaseTarget(database)}: ${e.message}; nothing was changed`);
        }
        throw e;
      } finally {
        await target.destroy();
      }
    } finally {
      await snapshot.destroy();
    }
    for (const f of [paths.database, `${paths.database}-wal`, `${paths.database}-shm`])
      await rm(f, { force: true });
  }
  const { database: _was, ...kept } = read.manifest;
  const fresh = newManifest(read.manifest.stateId, read.manifest.addresses, kind);
  await writeControllerManifest(paths, {
    ...kept,
    files: fresh.files,
    ...(kind === 'postgres' && { database: kind }),
  });
}

/**
 * `corral controller restore`: decrypts the backup into a staging dir beside `stateDir` (same
 * file system), writes each file with its own mode (keys 0600) and bound, validates the whole
 * state (see validate), and only then moves it in place with a rename. Throws, leaving
 * `stateDir` as it was: CORRAL_ERR_RESTORE_REFUSED for a non-empty `stateDir` without `force`
 * (before the backup is read) or one a running controller holds; CORRAL_ERR_BACKUP_PASSPHRASE
 * for a wrong passphrase; CORRAL_ERR_BACKUP_DAMAGED for a backup that fails authentication or
 * validation. The staging dir is removed on any failure.
 */
export async function restoreControllerState(o: RestoreOptions): Promise<RestoreResult> {
  const clock = o.clock ?? systemClock;
  const target = resolve(o.stateDir);
  if (o.database?.kind === 'sqlite' && resolve(o.database.path) !== join(target, 'corral.db')) {
    // Only the state dir's own file: one elsewhere is a move away once restored.
    throw refused(`restore puts an SQLite database at ${join(target, 'corral.db')}; nothing was changed`);
  }
  const before = await targetState(target);
  if (before === 'full') {
    if (!o.force) {
      throw refused(
        `${target} is not empty; restore into a new state dir, or pass --force to move it aside; nothing was changed`,
      );
    }
    if (await livePidFile(target, 'controller', { command: true })) {
      throw refused(`a controller is running on ${target}; stop it first; nothing was changed`);
    }
  }
  try {
    if (!(await stat(o.file)).isFile())
      throw new CorralError(ErrorCode.VALIDATION, `${o.file} is not a file`);
  } catch (e: unknown) {
    const code = (e as NodeJS.ErrnoException).code;
    if (typeof code === 'string' && code.startsWith('E'))
      throw new CorralError(ErrorCode.NOT_FOUND, `cannot read the backup ${o.file}: ${code}`);
    throw e;
  }
  await mkdir(dirname(target), { recursive: true, mode: PRIVATE_DIR_MODE });
  // `.D.restore-<pid>-<hex>`: a restore killed before its rename leaves only this, never a half
  // D; the next restore into D removes it.
  const stagingPrefix = `.${basename(target)}.restore-`;
  await removeStaleTemps(dirname(target), stagingPrefix, '');
  const staging = join(dirname(target), ownedTempName(stagingPrefix, ''));
  await mkdir(staging, { mode: PRIVATE_DIR_MODE });
  try {
    let manifest: BackupManifest | undefined;
    await pipeline(
      createReadStream(o.file),
      createBackupDecryptor(o.passphrase),
      async (plain: AsyncIterable<Buffer>) => {
        manifest = await extractBackup(plain, staging, o.progress);
      },
    );
    if (!manifest) throw damaged('it holds no archive');
    await mkdir(join(staging, 'run'), { mode: PRIVATE_DIR_MODE });
    const auditEntries = await validate(staging, manifest, clock);
    await placeDatabase(staging, o.database);
    // Checked again: the target may have changed while the backup was read.
    const now = await targetState(target);
    if (now === 'full' && !o.force)
      throw refused(`${target} was filled while the backup was restored; nothing was changed`);
    // Files were fsynced as they were written; their directory entries are made durable here,
    // before the rename publishes the tree, so a power cut cannot leave a dir missing a file.
    await syncTree(staging);
    let movedAside: string | null = null;
    if (now === 'full') {
      movedAside = `${target}.before-restore-${new Date(clock.now()).toISOString().replace(/[:.]/g, '-')}`;
      await rename(target, movedAside);
    } else if (now === 'empty') {
      await rmdir(target);
    }
    await rename(staging, target);
    await syncDir(dirname(target));
    return { stateDir: target, manifest, auditEntries, movedAside };
  } catch (e: unknown) {
    await rm(staging, { recursive: true, force: true });
    throw e;
  }
}

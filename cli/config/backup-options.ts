import { open } from 'node:fs/promises';
import { resolve } from 'node:path';
import { DEFAULT_BACKUP_KEEP, type BackupConfig } from '../../controller/index.js';
import { MAX_BACKUP_PASSPHRASE_BYTES, MIN_BACKUP_PASSPHRASE_CHARS } from '../../protocol/backup.js';
import { parseDurationMs } from '../duration.js';
import { CliExit, EXIT_USAGE } from '../exit.js';

/** Backup settings as flags or `backup:` in controller.yaml give them (flags win). */
export interface BackupSettings {
  readonly dir?: string | undefined;
  readonly passphraseFile?: string | undefined;
  /** A duration (`6h`); undefined: backups only before destructive actions. */
  readonly every?: string | undefined;
  readonly keep?: string | undefined;
}

/**
 * Reads a backup passphrase file at start: a regular file no one but its owner may read or
 * write (0600 or 0400), its first line, at least MIN_BACKUP_PASSPHRASE_CHARS characters.
 * Anything else exits 2 naming the file and the fix.
 */
export async function readBackupPassphraseFile(path: string): Promise<string> {
  let handle;
  try {
    handle = await open(path, 'r');
  } catch (e: unknown) {
    throw new CliExit(
      EXIT_USAGE,
      `--backup-passphrase-file: cannot read ${path}: ${(e as NodeJS.ErrnoException).code ?? String(e)}`,
    );
  }
  try {
    const st = await handle.stat();
    if (!st.isFile())
      throw new CliExit(EXIT_USAGE, `--backup-passphrase-file: ${path} is not a regular file`);
    const mode = st.mode & 0o777;
    if ((mode & 0o077) !== 0) {
      throw new CliExit(
        EXIT_USAGE,
        `--backup-passphrase-file: ${path} has mode 0${mode.toString(8)}, so other users can read the backups' passphrase; refusing to start (chmod 600 ${path})`,
      );
    }
    const buf = Buffer.alloc(MAX_BACKUP_PASSPHRASE_BYTES + 2);
    const { bytesRead } = await handle.read(buf, 0, buf.length, 0);
    const text = buf.subarray(0, bytesRead).toString('utf8');
    const end = text.indexOf('\n');
    const line = (end === -1 ? text : text.slice(0, end)).replace(/\r$/, '');
    if (end === -1 && bytesRead === buf.length)
      throw new CliExit(
        EXIT_USAGE,
        `--backup-passphrase-file: ${path} holds more than ${MAX_BACKUP_PASSPHRASE_BYTES} bytes on its first line`,
      );
    if ([...line].length < MIN_BACKUP_PASSPHRASE_CHARS)
      throw new CliExit(
        EXIT_USAGE,
        `--backup-passphrase-file: the first line of ${path} is shorter than ${MIN_BACKUP_PASSPHRASE_CHARS} characters`,
      );
    return line;
  } finally {
    await handle.close();
  }
}

/**
 * The controller's backups from the settings: none without a directory; a directory needs a
 * passphrase file (read here); `every` a positive duration; `keep` a whole number ≥ 1
 * (default DEFAULT_BACKUP_KEEP). Exits 2 on anything wrong.
 */
export async function backupConfigFrom(s: BackupSettings): Promise<BackupConfig | undefined> {
  if (s.dir === undefined) {
    const stray = s.passphraseFile ?? s.every ?? s.keep;
    if (stray !== undefined)
      throw new CliExit(
        EXIT_USAGE,
        '--backup-passphrase-file, --backup-every and --backup-keep need --backup-dir',
      );
    return undefined;
  }
  if (s.passphraseFile === undefined)
    throw new CliExit(EXIT_USAGE, '--backup-dir needs --backup-passphrase-file (a 0600 file)');
  let intervalMs: number | undefined;
  if (s.every !== undefined) {
    try {
      intervalMs = parseDurationMs(s.every);
    } catch (e: unknown) {
      throw new CliExit(EXIT_USAGE, `--backup-every: ${e instanceof Error ? e.message : String(e)}`);
    }
    if (!(intervalMs > 0)) throw new CliExit(EXIT_USAGE, '--backup-every must be positive');
  }
  const keep = s.keep === undefined ? DEFAULT_BACKUP_KEEP : Number(s.keep);
  if (!Number.isSafeInteger(keep) || keep < 1 || keep > 10_000)
    throw new CliExit(EXIT_USAGE, `--backup-keep must be a whole number from 1 to 10000, got ${s.keep}`);
  return {
    dir: resolve(s.dir),
    passphrase: await readBackupPassphraseFile(s.passphraseFile),
    intervalMs,
    keep,
  };
}

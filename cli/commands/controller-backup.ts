import type { Command } from 'commander';
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { open, rename, unlink } from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { PRIVATE_FILE_MODE, syncDir } from '../../pki/index.js';
import { extractBackup } from '../../kit/backup-archive.js';
import { createBackupDecryptor } from '../../kit/backup-cipher.js';
import { ownedTempName, removeStaleTemps } from '../../kit/stale-temps.js';
import {
  BACKUP_MANIFEST_HEADER,
  BackupManifest,
  MAX_BACKUP_MANIFEST_BYTES,
  MIN_BACKUP_PASSPHRASE_CHARS,
} from '../../protocol/backup.js';
import { CorralError, ErrorCode } from '../../protocol/errors.js';
import { parseJsonWith } from '../../protocol/validate.js';
import { adminClientFor } from '../admin-client.js';
import { addAdminTargetOptions, type AdminTargetOptions } from '../controller-home.js';
import { CliExit, EXIT_USAGE } from '../exit.js';
import { renderJson, renderRecord, type Output } from '../output.js';
import { readPassphrase } from '../passphrase-input.js';

/** How often a progress line is printed while a backup downloads or restores, in ms (on a terminal). */
const PROGRESS_EVERY_MS = 2_000;
/** A backup answer silent for this long is cut off, in ms. */
const BACKUP_IDLE_MS = 120_000;

const mib = (bytes: number): string => `${(bytes / 1024 / 1024).toFixed(1)} MiB`;

/** Prints `<verb> N MiB` lines to stderr at most every PROGRESS_EVERY_MS, only on a terminal. */
function progressLine(io: Output, verb: string): (bytes: number) => void {
  if (!process.stderr.isTTY) return () => undefined;
  let last = Date.now();
  return (bytes) => {
    const now = Date.now();
    if (now - last < PROGRESS_EVERY_MS) return;
    last = now;
    io.err(`${verb} ${mib(bytes)}\n`);
  };
}

/** Counts and hashes what it is given. */
function meter(onBytes: (total: number) => void): {
  add(chunk: Buffer): void;
  total(): number;
  sha256(): string;
} {
  const hash = createHash('sha256');
  let total = 0;
  let digest: string | undefined;
  return {
    add(chunk) {
      total += chunk.length;
      hash.update(chunk);
      onBytes(total);
    },
    total: () => total,
    sha256: () => (digest ??= hash.digest('hex')),
  };
}

/** Reads a whole backup file without writing anything: its passphrase, authentication and archive. */
async function verifyBackup(file: string, passphrase: string): Promise<BackupManifest> {
  let manifest: BackupManifest | undefined;
  await pipeline(
    createReadStream(file),
    createBackupDecryptor(passphrase),
    async (plain: AsyncIterable<Buffer>) => {
      manifest = await extractBackup(plain, undefined);
    },
  );
  if (!manifest) throw new CorralError(ErrorCode.BACKUP_DAMAGED, `${file} holds no archive`);
  return manifest;
}

interface BackupOpts extends AdminTargetOptions {
  out: string;
  passphraseFile?: string;
  json?: boolean;
}

/**
 * `corral controller backup --out FILE`: the controller streams an encrypted backup; it is
 * written 0600 to a temp file beside FILE, fsynced, read back whole with the passphrase (so a
 * backup that cannot be restored is never left as FILE), and renamed into place. On any
 * failure the temp file is removed and FILE is untouched; one a SIGKILL left is removed by the
 * next backup to FILE (kit/stale-temps.ts).
 */
async function runBackup(opts: BackupOpts, io: Output): Promise<void> {
  const passphrase = await readPassphrase(opts.passphraseFile, io, { confirm: true });
  if ([...passphrase].length < MIN_BACKUP_PASSPHRASE_CHARS) {
    throw new CliExit(
      EXIT_USAGE,
      `a backup passphrase has at least ${MIN_BACKUP_PASSPHRASE_CHARS} characters`,
    );
  }
  const out = resolve(opts.out);
  const admin = await adminClientFor(opts);
  const res = await admin.download('/v1/backup', { passphrase }, BACKUP_IDLE_MS);
  const header = res.headers[BACKUP_MANIFEST_HEADER];
  // `.FILE.<pid>-<hex>.tmp`: never FILE's name, and the next backup to FILE removes one a killed run left.
  const tmpPrefix = `.${basename(out)}.`;
  await removeStaleTemps(dirname(out), tmpPrefix, '.tmp');
  const tmp = join(dirname(out), ownedTempName(tmpPrefix, '.tmp'));
  const fh = await open(tmp, 'wx', PRIVATE_FILE_MODE);
  let renamed = false;
  try {
    await fh.chmod(PRIVATE_FILE_MODE);
    const m = meter(progressLine(io, 'received'));
    try {
      for await (const chunk of res as AsyncIterable<Buffer>) {
        m.add(chunk);
        await fh.write(chunk);
      }
      await fh.sync();
    } finally {
      await fh.close();
    }
    const manifest = await verifyBackup(tmp, passphrase);
    if (typeof header === 'string') {
      const announced = parseJsonWith(
        BackupManifest,
        Buffer.from(header, 'base64url').toString('utf8'),
        'backup manifest header',
        MAX_BACKUP_MANIFEST_BYTES,
      );
      if (JSON.stringify(announced) !== JSON.stringify(manifest)) {
        throw new CorralError(
          ErrorCode.BACKUP_DAMAGED,
          'the backup does not hold what the controller announced',
        );
      }
    }
    await rename(tmp, out);
    renamed = true;
    await syncDir(dirname(out));
    const summary = {
      file: out,
      bytes: m.total(),
      sha256: m.sha256(),
      createdAt: manifest.createdAt,
      stateId: manifest.stateId,
      caFingerprint: manifest.caFingerprint,
      auditSeq: manifest.auditSeq,
      files: manifest.files,
      verified: true,
    };
    if (opts.json) io.out(renderJson(summary));
    else
      io.out(
        renderRecord([
          ['file', out],
          ['size', `${mib(summary.bytes)} (${summary.bytes} bytes)`],
          ['sha256', summary.sha256],
          ['created', summary.createdAt],
          ['state id', summary.stateId],
          ['CA', `sha256:${summary.caFingerprint}`],
          ['audit entries', summary.auditSeq],
          ['files', manifest.files.map((f) => f.path).join(', ')],
          ['verified', 'read back whole with the passphrase'],
        ]),
      );
  } finally {
    if (!renamed) await unlink(tmp).catch(() => undefined /* ENOENT: never made or already gone */);
  }
}

interface RestoreOpts {
  stateDir: string;
  force?: boolean;
  passphraseFile?: string;
  database?: string;
  json?: boolean;
}

async function runRestore(file: string, opts: RestoreOpts, io: Output): Promise<void> {
  const passphrase = await readPassphrase(opts.passphraseFile, io, { confirm: false });
  // The controller's module graph (SQLite, the state checks) is loaded only here.
  const { restoreControllerState } = await import('../../controller/state/restore-state.js');
  const { parseDatabaseTarget } = await import('../../controller/db/database-target.js');
  let database;
  try {
    database = opts.database === undefined ? undefined : parseDatabaseTarget(opts.database);
  } catch (e: unknown) {
    throw new CliExit(EXIT_USAGE, e instanceof Error ? e.message : String(e));
  }
  const r = await restoreControllerState({
    file,
    stateDir: opts.stateDir,
    passphrase,
    force: opts.force ?? false,
    database,
    progress: progressLine(io, 'restored'),
  });
  const summary = {
    stateDir: r.stateDir,
    createdAt: r.manifest.createdAt,
    stateId: r.manifest.stateId,
    caFingerprint: r.manifest.caFingerprint,
    auditEntries: r.auditEntries,
    files: r.manifest.files,
    movedAside: r.movedAside,
  };
  if (opts.json) io.out(renderJson(summary));
  else
    io.out(
      renderRecord([
        ['state dir', r.stateDir],
        ['backup of', r.manifest.createdAt],
        ['state id', r.manifest.stateId],
        ['CA', `sha256:${r.manifest.caFingerprint}`],
        ['audit chain', `intact (${r.auditEntries} entries)`],
        ['files', r.manifest.files.map((f) => f.path).join(', ')],
        ['moved aside', r.movedAside],
        [
          'next',
          `corral controller serve --state-dir ${r.stateDir}${opts.database?.startsWith('postgres') ? ' --database …' : ''}`,
        ],
      ]),
    );
}

/** `corral controller backup` and `corral controller restore`. */
export function registerControllerBackupCommands(controller: Command, io: Output): void {
  addAdminTargetOptions(
    controller
      .command('backup')
      .description('save an encrypted backup of the controller (database, CA, identities) while it runs')
      .requiredOption('--out <file>', 'where the backup goes (written 0600, atomically)')
      .option('--passphrase-file <file>', 'read the passphrase from the first line of FILE (- for stdin)')
      .option('--json', 'print JSON'),
  ).action((opts: BackupOpts) => runBackup(opts, io));

  controller
    .command('restore <file>')
    .description('restore a backup into a state dir (checked whole before it is moved in place)')
    .requiredOption('--state-dir <dir>', 'the state dir to restore into (missing or empty unless --force)')
    .option('--force', 'move a non-empty state dir aside (to DIR.before-restore-TIME) and restore')
    .option('--passphrase-file <file>', 'read the passphrase from the first line of FILE (- for stdin)')
    .option(
      '--database <target>',
      "restore the database into this PostgreSQL database (postgres://…, empty of controller rows) instead of the state dir's corral.db",
    )
    .option('--json', 'print JSON')
    .action((file: string, opts: RestoreOpts) => runRestore(file, opts, io));
}

import { setTimeout as sleep } from 'node:timers/promises';
import type { Logger } from 'pino';
import type { EncryptOptions } from '../../kit/backup-cipher.js';
import { CorralError, ErrorCode } from '../../protocol/errors.js';
import type { AuditLog } from '../audit/audit-log.js';
import type { Clock } from '../clock.js';
import type { DatabaseTarget } from '../db/database-target.js';
import type { StatePaths } from './state-paths.js';
import { pruneBackupFiles, writeBackupFile, type WrittenBackup } from './backup-files.js';

/** Backups the controller writes itself (`backup:` in controller.yaml). */
export interface BackupConfig {
  /** Where backups go (made 0700). */
  readonly dir: string;
  /** Read by the CLI from a 0600 file at start; never logged. */
  readonly passphrase: string;
  /** A backup every this many ms; undefined: only before destructive actions. */
  readonly intervalMs?: number | undefined;
  /** Backups kept in `dir` (the newest); older ones are deleted after each backup. */
  readonly keep: number;
  /** The scrypt cost and chunk size (tests); default the cipher's. */
  readonly encryption?: EncryptOptions | undefined;
}

export const DEFAULT_BACKUP_KEEP = 7;

export interface BackupSchedule {
  /**
   * Writes one backup now (audited as `backup` by `actor`, with `reason`), then prunes beyond
   * `keep`. Backups run one at a time. Throws what the backup threw; CORRAL_ERR_CLOSED once
   * closed.
   */
  backupNow(actor: string, reason: string): Promise<WrittenBackup>;
  /**
   * Before a destructive action: a backup now, or CORRAL_ERR_BACKUP_FIRST_FAILED (the detail
   * is logged, not sent) so the caller changes nothing.
   */
  backupFirst(action: string, target: string, actor: string): Promise<void>;
  metricsLines(): string[];
  /** Stops the loop and waits for a backup in flight; idempotent. */
  close(): Promise<void>;
}

/**
 * The controller's own backups: every `intervalMs` when set (a failure is logged and counted,
 * the loop goes on; it ends when `signal` aborts or on close) and before destructive actions.
 */
export function startBackupSchedule(o: {
  readonly config: BackupConfig;
  readonly paths: StatePaths;
  readonly database?: DatabaseTarget | undefined;
  readonly audit: AuditLog;
  readonly clock: Clock;
  readonly log: Logger;
  readonly signal: AbortSignal;
  /** Scheduled backups are taken only while this says so (the leader); default always. */
  readonly leader?: () => boolean;
}): BackupSchedule {
  const { config, log } = o;
  const stop = new AbortController();
  const signal = AbortSignal.any([o.signal, stop.signal]);
  let written = 0;
  let failed = 0;
  let pruned = 0;
  let lastOkMs: number | null = null;
  /** One backup at a time: each waits for the one before it. */
  let chain: Promise<unknown> = Promise.resolve();

  function backupNow(actor: string, reason: string): Promise<WrittenBackup> {
    const run = async (): Promise<WrittenBackup> => {
      if (stop.signal.aborted) throw new CorralError(ErrorCode.CLOSED, 'the backup schedule is closed');
      try {
        await o.audit.append({ actor, action: 'backup', target: 'controller', details: { reason } });
        const done = await writeBackupFile({
          dir: config.dir,
          paths: o.paths,
          database: o.database,
          clock: o.clock,
          passphrase: config.passphrase,
          encryption: config.encryption,
        });
        written += 1;
        lastOkMs = o.clock.now();
        const gone = await pruneBackupFiles(config.dir, config.keep);
        pruned += gone.length;
        log.info({ file: done.file, bytes: done.bytes, reason, deleted: gone.length }, 'backup written');
        return done;
      } catch (e: unknown) {
        failed += 1;
        log.error({ err: e, reason, dir: config.dir }, 'backup failed');
        throw e;
      }
    };
    const next = chain.then(run, run);
    chain = next.catch(() => undefined /* counted and logged in run */);
    return next;
  }

  const loop = (async () => {
    const every = config.intervalMs;
    if (every === undefined) return;
    for (;;) {
      try {
        await sleep(every, undefined, { signal });
      } catch {
        // AbortError: closed or shutting down.
        return;
      }
      if (o.leader && !o.leader()) continue;
      await backupNow('controller', 'schedule').catch(() => undefined /* counted and logged */);
    }
  })();

  let closing: Promise<void> | undefined;
  return {
    backupNow,
    async backupFirst(action, target, actor) {
      try {
        await backupNow(actor, `before ${action} ${target}`);
      } catch (e: unknown) {
        throw new CorralError(
          ErrorCode.BACKUP_FIRST_FAILED,
          `${action} of ${target} refused: the backup taken before it failed (the controller log says why); nothing was changed`,
          { cause: e },
        );
      }
    },
    metricsLines: () => [
      '# HELP corral_backups_written_total Backups the controller wrote into its backup directory.',
      '# TYPE corral_backups_written_total counter',
      `corral_backups_written_total ${written}`,
      '# HELP corral_backups_failed_total Backups the controller tried and failed to write.',
      '# TYPE corral_backups_failed_total counter',
      `corral_backups_failed_total ${failed}`,
      '# HELP corral_backups_deleted_total Old backups deleted beyond the retention count.',
      '# TYPE corral_backups_deleted_total counter',
      `corral_backups_deleted_total ${pruned}`,
      '# HELP corral_backup_last_success_seconds When the last backup was written (Unix time; 0: never).',
      '# TYPE corral_backup_last_success_seconds gauge',
      `corral_backup_last_success_seconds ${lastOkMs === null ? 0 : Math.floor(lastOkMs / 1000)}`,
    ],
    close: () =>
      (closing ??= (async () => {
        stop.abort();
        await loop;
        await chain;
      })()),
  };
}

import { copyFile, mkdir, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCorral, type CliResult } from '../cli/up/corral-cli.js';
import { isolatedEnv } from '../cli/up/local-controller.js';
import { BACKUP_NAME_RE, listBackupFiles, openDatabase } from '../controller/index.js';
import { ErrorCode } from '../protocol/errors.js';
import { startController, type TestController } from './controller-fixture.js';
import { CLI, poll, tempDir } from './fleet-fixture.js';

/**
 * The controller's own backups, on a real controller (SQLite, loopback): a short schedule
 * keeps only the newest `keep`, each restorable by `corral controller restore`; a
 * decommission takes a backup first that still holds the host, and is refused (nothing
 * changed) when that backup cannot be written; `serve` refuses a passphrase file others can read.
 */
const PASSPHRASE = 'the automatic backups passphrase';
const KEEP = 2;

describe('automatic controller backups (real controller)', () => {
  let work = '';
  let passFile = '';
  let backupDir = '';
  let c: TestController | undefined;
  const cli = (args: readonly string[]): Promise<CliResult> => runCorral(CLI, args, { env: isolatedEnv() });
  const ctl = (): TestController => {
    if (!c) throw new Error('the controller did not start');
    return c;
  };

  beforeAll(async () => {
    work = await tempDir('autobak');
    passFile = join(work, 'passphrase');
    await writeFile(passFile, `${PASSPHRASE}\n`, { mode: 0o600 });
    backupDir = join(work, 'backups');
    c = await startController({
      decommissionWaitMs: 500,
      backups: {
        dir: backupDir,
        passphrase: PASSPHRASE,
        intervalMs: 300,
        keep: KEEP,
        encryption: { cost: { log2N: 10, r: 8, p: 1 } },
      },
    });
  }, 60_000);

  afterAll(async () => {
    await c?.close();
    await rm(work, { recursive: true, force: true });
  }, 60_000);

  /** Copies the backups of the directory as one listing names them (the schedule prunes meanwhile). */
  const snapshotBackups = async (name: string): Promise<{ dir: string; names: string[] }> => {
    for (let attempt = 0; attempt < 50; attempt += 1) {
      const dir = join(work, `${name}-${attempt}`);
      await mkdir(dir);
      const names = await listBackupFiles(backupDir);
      try {
        for (const n of names) await copyFile(join(backupDir, n), join(dir, n));
        return { dir, names };
      } catch (e: unknown) {
        // ENOENT: pruned between the listing and the copy; list again.
        if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
      }
    }
    throw new Error('the backups were pruned under every copy');
  };
  /** Restores a copy: the schedule goes on and may prune the original meanwhile. */
  const restore = async (file: string, into: string): Promise<CliResult> => {
    const copy = `${into}.corral-backup`;
    await copyFile(file, copy);
    return cli(['controller', 'restore', copy, '--state-dir', into, '--passphrase-file', passFile, '--json']);
  };

  it('writes a backup every interval, 0600 and atomically, keeps the newest KEEP, each restorable', async () => {
    // Several backups beyond KEEP: the counter says how many were written in all.
    await poll('several scheduled backups', async () => {
      const metrics = await ctl().admin<string>('GET', '/metrics');
      const m = /corral_backups_written_total (\d+)/.exec(metrics.body);
      return m && Number(m[1]) >= KEEP + 2 ? true : undefined;
    });
    const names = await poll('the directory pruned to KEEP', async () => {
      const n = await listBackupFiles(backupDir);
      return n.length === KEEP ? n : undefined;
    });
    expect((await stat(backupDir)).mode & 0o777).toBe(0o700);
    const kept = await snapshotBackups('kept');
    expect(kept.names.length).toBe(KEEP);
    const metrics = (await ctl().admin<string>('GET', '/metrics')).body;
    expect(Number(/corral_backups_deleted_total (\d+)/.exec(metrics)?.[1])).toBeGreaterThanOrEqual(2);
    expect(metrics).toMatch(/corral_backups_failed_total 0\b/);
    expect(names.length).toBe(KEEP);
    for (const [i, name] of kept.names.entries()) {
      expect(name).toMatch(BACKUP_NAME_RE);
      const file = join(kept.dir, name);
      // copyFile keeps the mode of the original.
      expect((await stat(file)).mode & 0o777).toBe(0o600);
      const r = await restore(file, join(work, `restored-${i}`));
      expect(r.code, r.stderr).toBe(0);
      expect((JSON.parse(r.stdout) as { auditEntries: number }).auditEntries).toBeGreaterThan(0);
    }
    // Nothing but backups (and at most a temp file of one in flight) is in the directory.
    const others = (await readdir(backupDir)).filter((n) => !BACKUP_NAME_RE.test(n));
    expect(others.every((n) => n.startsWith('.corral-backup-') && n.endsWith('.tmp'))).toBe(true);
  }, 120_000);

  it('takes a backup before a decommission that still holds the host', async () => {
    await ctl().enroll('doomed');
    const before = Date.now();
    const res = await ctl().admin<{ error?: unknown }>('POST', '/v1/hosts/doomed/decommission');
    expect(res.status, JSON.stringify(res.body)).toBe(200);
    const audit = await ctl().admin<{ entries: { action: string; details: unknown; seq: number }[] }>(
      'GET',
      '/v1/audit?limit=1000',
    );
    const first = audit.body.entries.find(
      (e) => e.action === 'backup' && JSON.stringify(e.details).includes('before decommission doomed'),
    );
    expect(first).toBeDefined();
    // The newest backup written before the decommission's own audit entry holds the host, active.
    const kept = await snapshotBackups('after-decommission');
    let found = false;
    for (const name of kept.names.reverse()) {
      const into = join(work, `pre-${name}`);
      const r = await restore(join(kept.dir, name), into);
      expect(r.code, r.stderr).toBe(0);
      const db = await openDatabase(join(into, 'corral.db'));
      try {
        const host = await db
          .selectFrom('hosts')
          .select(['name', 'decommissioned_at'])
          .where('name', '=', 'doomed')
          .executeTakeFirst();
        if (host && host.decommissioned_at === null) {
          found = true;
          break;
        }
      } finally {
        await db.destroy();
      }
    }
    expect(found).toBe(true);
    expect(Date.now()).toBeGreaterThanOrEqual(before);
  }, 120_000);

  it('refuses a decommission whose backup fails, with its code, and changes nothing', async () => {
    await ctl().enroll('kept');
    const aside = join(work, 'backups-aside');
    await mkdir(aside);
    // The backup directory becomes a file: no backup can be written there, even as root.
    await rm(backupDir, { recursive: true, force: true });
    await writeFile(backupDir, 'not a directory');
    try {
      const res = await ctl().admin<{ error: { code: string; message: string } }>(
        'POST',
        '/v1/hosts/kept/decommission',
      );
      expect(res.status).toBe(503);
      expect(res.body.error.code).toBe(ErrorCode.BACKUP_FIRST_FAILED);
      expect(res.body.error.message).not.toContain(work);
      const host = await ctl().admin<{ decommissionedAt: string | null; status: string }>(
        'GET',
        '/v1/hosts/kept',
      );
      expect(host.status).toBe(200);
      expect(host.body.decommissionedAt ?? null).toBeNull();
      const metrics = (await ctl().admin<string>('GET', '/metrics')).body;
      expect(Number(/corral_backups_failed_total (\d+)/.exec(metrics)?.[1])).toBeGreaterThanOrEqual(1);
    } finally {
      await rm(backupDir, { force: true });
    }
  }, 60_000);

  it('serve refuses a passphrase file with mode 0644', async () => {
    const stateDir = join(work, 'state-0644');
    const init = await cli(['controller', 'init', '--state-dir', stateDir]);
    expect(init.code, init.stderr).toBe(0);
    const loose = join(work, 'loose-passphrase');
    await writeFile(loose, `${PASSPHRASE}\n`, { mode: 0o644 });
    const { chmod } = await import('node:fs/promises');
    await chmod(loose, 0o644);
    const r = await cli([
      'controller',
      'serve',
      '--state-dir',
      stateDir,
      '--admin-listen',
      '127.0.0.1:0',
      '--worker-listen',
      '127.0.0.1:0',
      '--backup-dir',
      join(work, 'never'),
      '--backup-passphrase-file',
      loose,
    ]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('mode 0644');
    expect(r.stderr).toContain('chmod 600');
    await expect(stat(join(work, 'never'))).rejects.toThrow();
  }, 60_000);
});

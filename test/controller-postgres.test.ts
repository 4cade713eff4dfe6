import { readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { createAdminClient } from '../cli/admin-client.js';
import { spawnDaemon, type Daemon } from '../cli/up/daemon.js';
import { readEndpointsFile } from '../kit/endpoints-file.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCorral, type CliResult } from '../cli/up/corral-cli.js';
import { isolatedEnv } from '../cli/up/local-controller.js';
import { startLocalFleet, type LocalFleet } from '../cli/up/local-fleet.js';
import type { AuditVerification } from '../protocol/admin-audit.js';
import type { HostListResponse } from '../protocol/admin-hosts.js';
import { CLI, deploy, fleetCli, loggingSpec, poll, tempDir } from './fleet-fixture.js';
import { postgresSkipReason, startPostgres, type PostgresCluster } from './postgres-fixture.js';

/**
 * The whole controller on PostgreSQL, as a user runs it: `corral controller init` and
 * `serve --database postgres://…` against a private cluster, one real agent heartbeating, a
 * deploy placed and reported running, and the audit chain verifying through the CLI. Then a
 * backup taken while a deploy runs is restored into a fresh PostgreSQL database and into
 * SQLite; the worker of the old controller heartbeats to the one restored on PostgreSQL.
 */
const HEARTBEAT_INTERVAL_MS = 1_000;
const skip = postgresSkipReason();
const tag = `pg-${process.pid}`;

describe.skipIf(skip !== undefined)(
  `controller on PostgreSQL (real processes)${skip ? ` (skipped: ${skip})` : ''}`,
  () => {
    let dir: string | undefined;
    let pg: PostgresCluster | undefined;
    let fleet: LocalFleet | undefined;
    let url = '';
    let restored: Daemon | undefined;
    const f = (): LocalFleet => {
      if (!fleet) throw new Error('the fleet did not start');
      return fleet;
    };
    const cli = (args: readonly string[]): Promise<CliResult> => runCorral(CLI, args, { env: isolatedEnv() });

    beforeAll(async () => {
      dir = await tempDir('pg');
      pg = await startPostgres();
      url = await pg.createDatabase();
      fleet = await startLocalFleet({
        dir,
        cli: CLI,
        workers: [{ name: 'pg-1', address: '127.0.0.1' }],
        heartbeatIntervalMs: HEARTBEAT_INTERVAL_MS,
        updater: false,
        forwarder: false,
        initArgs: ['--database', url],
        serveArgs: ['--database', url],
      });
    }, 240_000);

    afterAll(async () => {
      try {
        await restored?.stop();
        if (fleet) await fleet.close();
        await pg?.stop();
      } finally {
        if (dir) await rm(dir, { recursive: true, force: true });
      }
    }, 180_000);

    it('keeps its state in PostgreSQL: no database file in the state dir, and serve without --database refuses', async () => {
      expect(await readdir(f().controller.stateDir)).not.toContain('corral.db');
      const r = await cli([
        'controller',
        'serve',
        '--state-dir',
        f().controller.stateDir,
        '--admin-listen',
        '127.0.0.1:0',
      ]);
      expect(r.code).not.toBe(0);
      expect(r.stderr).toContain('--database postgres://');
    });

    it('a real agent heartbeats, a deploy runs, and the audit chain verifies', async () => {
      await f().controller.waitForHosts(['pg-1'], ['online']);
      const deployed = await deploy(f(), loggingSpec(1, tag));
      expect(deployed.exitCode).toBe(0);
      await poll('the service running on pg-1', async () => {
        const services = await f().controller.services();
        return services.some((s) => s.host === 'pg-1' && s.observed === 'running') ? true : undefined;
      });
      const seenBefore =
        (await f().controller.admin.get<HostListResponse>('/v1/hosts')).hosts[0]?.lastSeen ?? '';
      await poll('a later heartbeat', async () => {
        const h = (await f().controller.admin.get<HostListResponse>('/v1/hosts')).hosts[0];
        return h?.lastSeen && h.lastSeen > seenBefore ? true : undefined;
      });
      // /metrics reads the heartbeat's JSON fields with PostgreSQL's own JSON operators.
      const metrics = await f().controller.admin.text('/metrics');
      expect(metrics).toMatch(/^corral_host_load1\{host="pg-1"\} \d/m);
      expect(metrics).toMatch(/^corral_host_disk_free_bytes\{host="pg-1"\} \d/m);
      const verify = await fleetCli(f(), ['controller', 'audit', '--verify', '--json']);
      expect(verify.code, verify.stderr).toBe(0);
      const v = JSON.parse(verify.stdout) as AuditVerification;
      expect(v.ok).toBe(true);
      expect(v.checked).toBeGreaterThanOrEqual(3);
    }, 180_000);

    it('backs up while a deploy runs, and restores into another PostgreSQL database and into SQLite', async () => {
      const work = dir ?? '';
      const passFile = join(work, 'passphrase');
      await writeFile(passFile, 'a passphrase for the pg backup\n', { mode: 0o600 });
      const backupFile = join(work, 'pg.corral-backup');
      const [deployed, backup] = await Promise.all([
        deploy(f(), loggingSpec(2, tag), 'spec-2'),
        fleetCli(f(), ['controller', 'backup', '--out', backupFile, '--passphrase-file', passFile, '--json']),
      ]);
      expect(backup.code, backup.stderr).toBe(0);
      expect(deployed.exitCode).toBe(0);
      expect((JSON.parse(backup.stdout) as { verified: boolean }).verified).toBe(true);
      expect((await stat(backupFile)).mode & 0o777).toBe(0o600);

      // Into SQLite: the backup's database is an SQLite snapshot, checked and migrated on restore.
      const intoSqlite = join(work, 'restored-sqlite');
      const sqliteRestore = await cli([
        'controller',
        'restore',
        backupFile,
        '--state-dir',
        intoSqlite,
        '--passphrase-file',
        passFile,
        '--json',
      ]);
      expect(sqliteRestore.code, sqliteRestore.stderr).toBe(0);
      expect(await readdir(intoSqlite)).toContain('corral.db');
      const manifest = JSON.parse(await readFile(join(intoSqlite, 'state-manifest.json'), 'utf8')) as {
        database?: string;
      };
      expect(manifest.database).toBeUndefined();

      // Into a PostgreSQL database already holding a controller: refused, nothing changed.
      const intoPg = join(work, 'restored-pg');
      const busy = await cli([
        'controller',
        'restore',
        backupFile,
        '--state-dir',
        intoPg,
        '--passphrase-file',
        passFile,
        '--database',
        url,
      ]);
      expect(busy.code).toBe(1);
      expect(busy.stderr).toContain('CORRAL_ERR_RESTORE_REFUSED');
      await expect(stat(intoPg)).rejects.toMatchObject({ code: 'ENOENT' });

      const fresh = await (pg as PostgresCluster).createDatabase();
      const r = await cli([
        'controller',
        'restore',
        backupFile,
        '--state-dir',
        intoPg,
        '--passphrase-file',
        passFile,
        '--database',
        fresh,
        '--json',
      ]);
      expect(r.code, r.stderr).toBe(0);
      expect(await readdir(intoPg)).not.toContain('corral.db');
      const summary = JSON.parse(r.stdout) as { auditEntries: number };

      const workerPort = (f().controller.endpoints.worker ?? '').split(':').at(-1) ?? '';
      await f().controller.daemon.stop();
      const restoredAt = new Date().toISOString();
      restored = await spawnDaemon({
        name: 'restored-controller',
        command: process.execPath,
        args: [
          CLI.bin,
          'controller',
          'serve',
          '--state-dir',
          intoPg,
          '--database',
          fresh,
          '--admin-listen',
          '127.0.0.1:0',
          '--worker-listen',
          `127.0.0.1:${workerPort}`,
          '--heartbeat-interval',
          `${HEARTBEAT_INTERVAL_MS}ms`,
          '--log-level',
          'warn',
        ],
        logFile: join(work, 'restored.log'),
        env: isolatedEnv(),
      });
      const restoredLog = join(work, 'restored.log');
      const logTail = async (): Promise<string> =>
        (await readFile(restoredLog, 'utf8').catch(() => '')).slice(-4000);
      // A controller that exits (a taken port, a failed migration) fails here with its log,
      // instead of a bare timeout; a slow start under a loaded CI machine gets two minutes.
      const daemon = restored;
      const adminUrl = await Promise.race([
        poll(
          'the restored controller listening',
          async () => {
            const e = await readEndpointsFile(intoPg).catch(() => undefined /* not written yet */);
            return e?.admin;
          },
          120_000,
        ).catch(async (e: unknown) => {
          throw new Error(`${(e as Error).message}\n--- restored.log ---\n${await logTail()}`);
        }),
        daemon.exited.then(async (x) => {
          throw new Error(
            `the restored controller exited (code ${String(x.code)}, signal ${String(x.signal)})\n--- restored.log ---\n${await logTail()}`,
          );
        }),
      ]);
      const token = (await readFile(join(intoPg, 'admin-token'), 'utf8')).trim();
      const admin = createAdminClient({ url: adminUrl, token });
      await poll('the old worker heartbeating to the restored controller', async () => {
        const hosts = (await admin.get<HostListResponse>('/v1/hosts')).hosts;
        return hosts.some(
          (h) => h.name === 'pg-1' && h.status === 'online' && (h.lastSeen ?? '') > restoredAt,
        )
          ? true
          : undefined;
      });
      const verify = await cli(['controller', 'audit', '--verify', '--json', '--state-dir', intoPg]);
      expect(verify.code, verify.stderr).toBe(0);
      const v = JSON.parse(verify.stdout) as AuditVerification;
      expect(v.ok).toBe(true);
      expect(v.checked).toBeGreaterThanOrEqual(summary.auditEntries);
    }, 240_000);
  },
);

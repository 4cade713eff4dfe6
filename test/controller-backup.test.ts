import { mkdir, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createAdminClient } from '../cli/admin-client.js';
import { runCorral, type CliResult } from '../cli/up/corral-cli.js';
import { spawnDaemon, type Daemon } from '../cli/up/daemon.js';
import { isolatedEnv } from '../cli/up/local-controller.js';
import { startLocalFleet, type LocalFleet } from '../cli/up/local-fleet.js';
import { readEndpointsFile } from '../kit/endpoints-file.js';
import type { AuditEntry, AuditVerification } from '../protocol/admin-audit.js';
import type { HostListResponse } from '../protocol/admin-hosts.js';
import { ErrorCode } from '../protocol/errors.js';
import type { OperatorCreateResponse } from '../protocol/operators.js';
import { CLI, deploy, loggingSpec, poll, tempDir } from './fleet-fixture.js';

/**
 * Backup and restore against real `corral` processes: a controller and two workers (real
 * agents). A backup is taken while a deploy runs and heartbeats keep coming; restored into a
 * fresh state dir and served on the old worker port, the old controller's workers heartbeat
 * to the restored one with their existing certificates and pins, its audit chain verifies
 * and an operator token made before the backup still works. A wrong passphrase and a
 * flipped byte are refused and change nothing.
 */
const HEARTBEAT_INTERVAL_MS = 1_000;
const tag = `backup-${process.pid}`;
const PASSPHRASE = 'a passphrase for the backup test';

describe('controller backup and restore (real processes)', () => {
  let dir: string | undefined;
  let fleet: LocalFleet | undefined;
  let restored: Daemon | undefined;
  let operatorToken = '';
  let backupFile = '';
  let passFile = '';
  let wrongFile = '';
  const f = (): LocalFleet => {
    if (!fleet) throw new Error('the fleet did not start');
    return fleet;
  };
  const cli = (args: readonly string[]): Promise<CliResult> => runCorral(CLI, args, { env: isolatedEnv() });
  const work = (): string => {
    if (!dir) throw new Error('no work dir');
    return dir;
  };

  beforeAll(async () => {
    dir = await tempDir('backup');
    fleet = await startLocalFleet({
      dir,
      cli: CLI,
      workers: ['bk-1', 'bk-2'].map((name) => ({ name, address: '127.0.0.1' })),
      heartbeatIntervalMs: HEARTBEAT_INTERVAL_MS,
      updater: false,
      forwarder: false,
    });
    passFile = join(dir, 'passphrase');
    wrongFile = join(dir, 'wrong-passphrase');
    await writeFile(passFile, `${PASSPHRASE}\n`, { mode: 0o600 });
    await writeFile(wrongFile, 'not the passphrase at all\n', { mode: 0o600 });
    const created = await fleet.controller.admin.post<OperatorCreateResponse>('/v1/operators', {
      name: 'reader',
      scopes: ['read'],
    });
    operatorToken = created.token ?? '';
    expect(operatorToken).not.toBe('');
  }, 240_000);

  afterAll(async () => {
    try {
      await restored?.stop();
      if (fleet) await fleet.close();
    } finally {
      if (dir) await rm(dir, { recursive: true, force: true });
    }
  }, 180_000);

  it('takes a backup while a deploy runs and heartbeats keep coming; the file is 0600 and verified', async () => {
    backupFile = join(work(), 'fleet.corral-backup');
    const [deployed, backup] = await Promise.all([
      deploy(f(), loggingSpec(2, tag)),
      cli([
        'controller',
        'backup',
        '--state-dir',
        f().controller.stateDir,
        '--out',
        backupFile,
        '--passphrase-file',
        passFile,
        '--json',
      ]),
    ]);
    expect(backup.stderr).toBe('');
    expect(backup.code).toBe(0);
    expect(deployed.exitCode).toBe(0);
    const summary = JSON.parse(backup.stdout) as {
      verified: boolean;
      bytes: number;
      files: { path: string }[];
    };
    expect(summary.verified).toBe(true);
    expect(summary.files.map((x) => x.path)).toContain('ca/ca.key');
    const st = await stat(backupFile);
    expect(st.mode & 0o777).toBe(0o600);
    expect(st.size).toBe(summary.bytes);
    // No temp file is left beside it, and neither the passphrase nor a key is in it.
    expect((await readdir(work())).filter((n) => n.includes('.tmp'))).toEqual([]);
    const bytes = await readFile(backupFile);
    expect(bytes.includes(Buffer.from(PASSPHRASE))).toBe(false);
    expect(bytes.includes(Buffer.from('PRIVATE KEY'))).toBe(false);
    const log = await readFile(join(work(), 'controller.log'), 'utf8');
    expect(log.includes(PASSPHRASE)).toBe(false);
    await f().controller.waitForHosts(['bk-1', 'bk-2'], ['online']);
  }, 180_000);

  it('refuses a wrong passphrase, a flipped byte and a non-empty state dir, changing nothing', async () => {
    const parent = join(work(), 'targets');
    await mkdir(parent);
    const fresh = join(parent, 'fresh');
    const wrong = await cli([
      'controller',
      'restore',
      backupFile,
      '--state-dir',
      fresh,
      '--passphrase-file',
      wrongFile,
    ]);
    expect(wrong.code).toBe(1);
    expect(wrong.stderr).toContain(ErrorCode.BACKUP_PASSPHRASE);

    const bytes = await readFile(backupFile);
    for (const at of [20, 200, Math.floor(bytes.length / 2), bytes.length - 3]) {
      const flipped = Buffer.from(bytes);
      flipped[at] = (flipped[at] ?? 0) ^ 0x10;
      const file = join(parent, `flipped-${at}`);
      await writeFile(file, flipped);
      const r = await cli([
        'controller',
        'restore',
        file,
        '--state-dir',
        fresh,
        '--passphrase-file',
        passFile,
      ]);
      expect(r.code, r.stderr).toBe(1);
      expect(r.stderr).toContain(ErrorCode.BACKUP_DAMAGED);
      await rm(file);
    }
    // Nothing was made: no target, no staging dir left.
    expect(await readdir(parent)).toEqual([]);

    const full = join(parent, 'full');
    await mkdir(full);
    await writeFile(join(full, 'keep-me'), 'still here');
    const refused = await cli([
      'controller',
      'restore',
      backupFile,
      '--state-dir',
      full,
      '--passphrase-file',
      passFile,
    ]);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toContain(ErrorCode.RESTORE_REFUSED);
    const forcedWrong = await cli([
      'controller',
      'restore',
      backupFile,
      '--state-dir',
      full,
      '--force',
      '--passphrase-file',
      wrongFile,
    ]);
    expect(forcedWrong.stderr).toContain(ErrorCode.BACKUP_PASSPHRASE);
    expect(await readdir(full)).toEqual(['keep-me']);
    expect(await readFile(join(full, 'keep-me'), 'utf8')).toBe('still here');
    expect((await readdir(parent)).sort()).toEqual(['full']);

    // With --force and the right passphrase the old dir is moved aside, not deleted.
    const forced = await cli([
      'controller',
      'restore',
      backupFile,
      '--state-dir',
      full,
      '--force',
      '--passphrase-file',
      passFile,
      '--json',
    ]);
    expect(forced.code, forced.stderr).toBe(0);
    const aside = (JSON.parse(forced.stdout) as { movedAside: string }).movedAside;
    expect(await readFile(join(aside, 'keep-me'), 'utf8')).toBe('still here');
    expect(await readdir(full)).toContain('corral.db');
  }, 120_000);

  it('restored on a fresh state dir, it is the same controller: old workers heartbeat to it, audit verifies, tokens work', async () => {
    const oldWorker = f().controller.endpoints.worker ?? '';
    const workerPort = oldWorker.split(':').at(-1) ?? '';
    expect(workerPort).not.toBe('');
    await f().controller.daemon.stop();

    const stateDir = join(work(), 'restored');
    const r = await cli([
      'controller',
      'restore',
      backupFile,
      '--state-dir',
      stateDir,
      '--passphrase-file',
      passFile,
      '--json',
    ]);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const summary = JSON.parse(r.stdout) as { auditEntries: number; movedAside: string | null };
    expect(summary.auditEntries).toBeGreaterThan(0);
    expect(summary.movedAside).toBeNull();
    for (const key of ['ca/ca.key', 'tls/controller.key', 'tls/controller-client.key', 'admin-token']) {
      expect((await stat(join(stateDir, key))).mode & 0o777).toBe(0o600);
    }

    const restoredAt = new Date().toISOString();
    restored = await spawnDaemon({
      name: 'restored-controller',
      command: process.execPath,
      args: [
        CLI.bin,
        'controller',
        'serve',
        '--state-dir',
        stateDir,
        '--admin-listen',
        '127.0.0.1:0',
        '--worker-listen',
        `127.0.0.1:${workerPort}`,
        '--heartbeat-interval',
        `${HEARTBEAT_INTERVAL_MS}ms`,
        '--log-level',
        'warn',
      ],
      logFile: join(work(), 'restored.log'),
      env: isolatedEnv(),
    });
    const adminUrl = await poll('the restored controller listening', async () => {
      const e = await readEndpointsFile(stateDir).catch(() => undefined /* not written yet */);
      return e?.admin;
    });
    const adminToken = (await readFile(join(stateDir, 'admin-token'), 'utf8')).trim();
    const admin = createAdminClient({ url: adminUrl, token: adminToken });

    // The old controller's agents, with the certificates and pins they had, reach this one.
    await poll('both old workers heartbeating to the restored controller', async () => {
      const hosts = (await admin.get<HostListResponse>('/v1/hosts')).hosts;
      const fresh = hosts.filter(
        (h) => h.status === 'online' && h.lastSeen !== null && h.lastSeen > restoredAt,
      );
      return fresh.length === 2 ? fresh : undefined;
    });

    const verify = await cli(['controller', 'audit', '--verify', '--json', '--state-dir', stateDir]);
    expect(verify.code, verify.stderr).toBe(0);
    const v = JSON.parse(verify.stdout) as AuditVerification;
    expect(v.ok).toBe(true);
    expect(v.checked).toBeGreaterThanOrEqual(summary.auditEntries);
    const audit = await admin.get<{ entries: AuditEntry[] }>('/v1/audit?limit=1000');
    expect(audit.entries.some((e) => e.action === 'backup')).toBe(true);

    // The operator token made before the backup works on the restored controller.
    const reader = createAdminClient({ url: adminUrl, token: operatorToken });
    const hosts = (await reader.get<HostListResponse>('/v1/hosts')).hosts;
    expect(hosts.map((h) => h.name).sort()).toEqual(['bk-1', 'bk-2']);
  }, 180_000);
});

import { rm } from 'node:fs/promises';
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
 * deploy placed and reported running, and the audit chain verifying through the CLI.
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
        if (fleet) await fleet.close();
        await pg?.stop();
      } finally {
        if (dir) await rm(dir, { recursive: true, force: true });
      }
    }, 180_000);

    it('keeps its state in PostgreSQL: no database file in the state dir, and serve without --database refuses', async () => {
      const { readdir } = await import('node:fs/promises');
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
      const verify = await fleetCli(f(), ['controller', 'audit', '--verify', '--json']);
      expect(verify.code, verify.stderr).toBe(0);
      const v = JSON.parse(verify.stdout) as AuditVerification;
      expect(v.ok).toBe(true);
      expect(v.checked).toBeGreaterThanOrEqual(3);
    }, 180_000);
  },
);

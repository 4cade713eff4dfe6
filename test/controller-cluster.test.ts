/**
 * Two `controller serve` processes on one private PostgreSQL database, the second on a copy of
 * the first state dir (same CA and identities): exactly one is leader on /metrics, and after
 * the leader is killed with SIGKILL the other takes the leader lock over.
 */
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it, expect } from 'vitest';
import { spawnDaemon } from '../cli/up/daemon.js';
import { isolatedEnv } from '../cli/up/local-controller.js';
import { readEndpointsFile } from '../kit/endpoints-file.js';
import { poll } from './fleet-fixture.js';
import { clusterServeArgs, sharedControllerStates } from './cluster-fixture.js';
import { postgresSkipReason, startPostgres } from './postgres-fixture.js';
describe.skipIf(postgresSkipReason() !== undefined)(
  'two controllers on one PostgreSQL (real processes)',
  () => {
    it('only one leads; killing the leader -9 makes the other lead', async () => {
      const pg = await startPostgres();
      const url = await pg.createDatabase();
      const dir = await mkdtemp(join(tmpdir(), 'h19-'));
      const { a, b } = await sharedControllerStates(dir, url);
      const start = (d: string, n: string) =>
        spawnDaemon({
          name: n,
          command: process.execPath,
          args: clusterServeArgs(d, url, ['--log-level', 'info']),
          logFile: join(dir, n + '.log'),
          env: isolatedEnv(),
        });
      const leaderOf = async (d: string) => {
        const e = await readEndpointsFile(d);
        const token = (await readFile(join(d, 'admin-token'), 'utf8')).trim();
        const r = await fetch(`${e?.admin ?? 'http://127.0.0.1:1'}/metrics`, {
          headers: { authorization: `Bearer ${token}` },
        });
        const m = /^corral_controller_leader (\d)/m.exec(await r.text());
        return m?.[1];
      };
      const da = await start(a, 'a');
      await poll('a up', async () => (await readEndpointsFile(a).catch(() => undefined))?.admin, 60_000);
      const db = await start(b, 'b');
      await poll('b up', async () => (await readEndpointsFile(b).catch(() => undefined))?.admin, 60_000);
      await poll('a leads', async () => ((await leaderOf(a)) === '1' ? true : undefined));
      const before = [await leaderOf(a), await leaderOf(b)];
      expect(before).toEqual(['1', '0']);
      process.kill(da.pid, 'SIGKILL');
      await poll('b leads', async () => ((await leaderOf(b)) === '1' ? true : undefined), 30_000);
      await db.stop();
      await pg.stop();
      await rm(dir, { recursive: true, force: true });
    }, 180_000);
  },
);

/**
 * A controller on PostgreSQL outlives the loss of its connections: the server ends every
 * session of the controller's database (as a PostgreSQL restart or failover does, or an
 * operator's pg_terminate_backend), and `corral controller serve` keeps running and answers
 * from new connections. Before the pools had an error listener, an idle pooled connection
 * ending was an uncaught 'error' event and the process died.
 */
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import pg from 'pg';
import { request } from 'undici';
import { describe, expect, it } from 'vitest';
import { spawnDaemon } from '../cli/up/daemon.js';
import { runCorral } from '../cli/up/corral-cli.js';
import { isolatedEnv } from '../cli/up/local-controller.js';
import { readEndpointsFile } from '../kit/endpoints-file.js';
import { clusterServeArgs } from './cluster-fixture.js';
import { CLI, poll } from './fleet-fixture.js';
import { postgresSkipReason, startPostgres } from './postgres-fixture.js';

const skip = postgresSkipReason();
/** Long enough for an uncaught error of a dropped idle connection to end the process. */
const SETTLE_MS = 1_500;

describe.skipIf(skip !== undefined)(
  `controller serve on PostgreSQL, its sessions terminated${skip ? ` (skipped: ${skip})` : ''}`,
  () => {
    it('keeps running and answers admin reads and writes on new connections', async () => {
      const cluster = await startPostgres();
      await using _cluster = { [Symbol.asyncDispose]: () => cluster.stop() };
      const dir = await mkdtemp(join(tmpdir(), 'corral-pgloss-'));
      const env = isolatedEnv();
      const url = await cluster.createDatabase();
      const state = join(dir, 'state');
      const admin = new pg.Client({ connectionString: url });
      try {
        const init = await runCorral(CLI, ['controller', 'init', '--state-dir', state, '--database', url], {
          env,
        });
        expect(init.code, init.stderr).toBe(0);
        await using daemon = await spawnDaemon({
          name: 'controller',
          command: process.execPath,
          args: clusterServeArgs(state, url),
          logFile: join(dir, 'controller.log'),
          env,
        });
        const endpoint = await poll(
          'controller up',
          async () => (await readEndpointsFile(state).catch(() => undefined /* not written yet */))?.admin,
          60_000,
        );
        const token = (await readFile(join(state, 'admin-token'), 'utf8')).trim();
        const call = async (method: 'GET' | 'POST', path: string, body?: unknown): Promise<number> => {
          const res = await request(`${endpoint}${path}`, {
            method,
            headers: {
              authorization: `Bearer ${token}`,
              ...(body !== undefined && { 'content-type': 'application/json' }),
            },
            body: body === undefined ? null : JSON.stringify(body),
          });
          await res.body.text();
          return res.statusCode;
        };
        // Reader and writer pools both hold an idle connection.
        expect(await call('GET', '/v1/hosts')).toBe(200);
        expect(await call('POST', '/v1/enroll', { name: 'before', address: '127.0.0.1' })).toBe(200);

        await admin.connect();
        const ended = await admin.query<{ n: string }>(
          `SELECT count(*) AS n FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity
            WHERE datname = current_database() AND pid <> pg_backend_pid()) AS t`,
        );
        expect(Number(ended.rows[0]?.n)).toBeGreaterThan(0);
        await sleep(SETTLE_MS);

        expect(daemon.running(), await readFile(join(dir, 'controller.log'), 'utf8')).toBe(true);
        expect(await call('GET', '/v1/hosts')).toBe(200);
        expect(await call('POST', '/v1/enroll', { name: 'after', address: '127.0.0.1' })).toBe(200);
        expect(daemon.running()).toBe(true);
      } finally {
        await admin.end();
        await rm(dir, { recursive: true, force: true });
      }
    });
  },
);

/**
 * Two controllers on one private PostgreSQL database, sharing one state dir's CA and
 * identities: A a real `controller serve` process (the leader), B in this process (the
 * follower, so the test can hold its worker connections). Host status events are told once
 * whichever controller the heartbeats reach; a decommission through A closes the worker's live
 * connection on B (NOTIFY, not B's periodic resync); after `kill -9` of A, B leads, ends the
 * operation A left running, and tells the offline host it now sweeps exactly once.
 */
import { once } from 'node:events';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { createServer, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { request } from 'undici';
import { describe, expect, it } from 'vitest';
import { spawnDaemon } from '../cli/up/daemon.js';
import { freePort } from '../cli/up/free-port.js';
import { isolatedEnv } from '../cli/up/local-controller.js';
import {
  createController,
  loadControllerIdentity,
  openDatabase,
  openReadConnection,
  toDatabaseTarget,
} from '../controller/index.js';
import { RESTART_REASON } from '../controller/deploy/operations.js';
import { readEndpointsFile } from '../kit/endpoints-file.js';
import type { EnrollResponse } from '../protocol/enrollment.js';
import { agentMaterial, heartbeatBody, postJson, silentLog, workerClient } from './controller-fixture.js';
import { poll } from './fleet-fixture.js';
import { clusterServeArgs, sharedControllerStates } from './cluster-fixture.js';
import { postgresSkipReason, startPostgres } from './postgres-fixture.js';

const HEARTBEAT_INTERVAL_MS = 500;
/** Between two heartbeats of the test's workers: well inside the interval and the rate limit. */
const BEAT_EVERY_MS = 150;
const skip = postgresSkipReason();

describe.skipIf(skip !== undefined)(
  `two controllers on one PostgreSQL: background work once, takeover${skip ? ` (skipped: ${skip})` : ''}`,
  () => {
    it('tells host status once, closes a revoked connection on the other, and the survivor of kill -9 ends the dead leader’s operation', async () => {
      const pg = await startPostgres();
      const dir = await mkdtemp(join(tmpdir(), 'corral-takeover-'));
      /** A TCP port that accepts and never answers: A's deploy to it stays running. */
      const held: Socket[] = [];
      const silent = createServer((s) => held.push(s));
      const cleanups: (() => Promise<unknown>)[] = [
        () => rm(dir, { recursive: true, force: true }),
        () => pg.stop(),
        () => {
          for (const s of held) s.destroy();
          return new Promise((r) => silent.close(r));
        },
      ];
      try {
        silent.listen(0, '127.0.0.1');
        await once(silent, 'listening');
        const silentPort = (silent.address() as { port: number }).port;
        const url = await pg.createDatabase();
        const { a, b } = await sharedControllerStates(dir, url);

        const daemonA = await spawnDaemon({
          name: 'a',
          command: process.execPath,
          args: clusterServeArgs(a, url, ['--heartbeat-interval', `${HEARTBEAT_INTERVAL_MS}ms`]),
          logFile: join(dir, 'a.log'),
          env: isolatedEnv(),
        });
        let aAlive = true;
        cleanups.unshift(async () => {
          if (aAlive) await daemonA.stop();
        });
        const endpointsA = await poll(
          'a up',
          async () => {
            const e = await readEndpointsFile(a).catch(() => undefined /* not written yet */);
            return e?.admin !== undefined && e.worker !== undefined
              ? { admin: e.admin, worker: e.worker }
              : undefined;
          },
          60_000,
        );
        const token = (await readFile(join(a, 'admin-token'), 'utf8')).trim();
        const adminA = async <T>(method: string, path: string, body?: unknown) => {
          const res = await request(`${endpointsA.admin}${path}`, {
            method: method as 'GET',
            headers: {
              authorization: `Bearer ${token}`,
              ...(body !== undefined && { 'content-type': 'application/json' }),
            },
            body: body === undefined ? null : JSON.stringify(body),
          });
          return { status: res.statusCode, body: (await res.body.json()) as T };
        };
        await poll('a leads', async () => {
          const r = await request(`${endpointsA.admin}/metrics`, {
            headers: { authorization: `Bearer ${token}` },
          });
          return /^corral_controller_leader 1$/m.test(await r.body.text()) ? true : undefined;
        });

        const database = toDatabaseTarget(url);
        const dbB = await openDatabase(database);
        const readB = await openReadConnection(database);
        const ctlB = await createController({
          db: dbB,
          readDb: readB,
          database,
          identity: await loadControllerIdentity(b),
          log: silentLog,
          heartbeatIntervalMs: HEARTBEAT_INTERVAL_MS,
          // Only a NOTIFY can close a revoked connection on B within this test.
          cluster: { leaderRetryMs: 200, resyncMs: 600_000, recoverEveryMs: 500 },
        });
        cleanups.unshift(async () => {
          await ctlB.close();
          await readB.destroy();
          await dbB.destroy();
        });
        const endpointsB = await ctlB.listen({
          admin: { host: '127.0.0.1', port: 0 },
          worker: { host: '127.0.0.1', port: 0 },
          join: { host: '127.0.0.1', port: 0 },
        });
        expect(ctlB.cluster.isLeader()).toBe(false);

        const enrollThrough = async (admin: string, name: string, agentPort: number) => {
          const res = await request(`${admin}/v1/enroll`, {
            method: 'POST',
            headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
            body: JSON.stringify({ name, address: '127.0.0.1', agentPort }),
          });
          expect(res.statusCode).toBe(200);
          return (await res.body.json()) as EnrollResponse;
        };
        /** Heartbeats from `host` through `endpoint` until `stop` (bounded by `maxBeats`). */
        const beating = (host: EnrollResponse, endpoint: string) => {
          const client = workerClient(endpoint, agentMaterial(host));
          let stopped = false;
          const loop = (async () => {
            for (let i = 0; i < 2_000 && !stopped; i++) {
              await postJson(client, '/v1/heartbeat', heartbeatBody(host.hostId)).catch(
                () => undefined /* its controller was killed */,
              );
              await sleep(BEAT_EVERY_MS);
            }
          })();
          return {
            client,
            async stop() {
              stopped = true;
              await loop;
              await client.destroy();
            },
          };
        };
        const count = async (hostId: string, kind: string): Promise<number> => {
          const row = await dbB
            .selectFrom('fleet_events')
            .select((eb) => eb.fn.countAll<number>().as('n'))
            .where('host_id', '=', hostId)
            .where('kind', '=', kind)
            .executeTakeFirstOrThrow();
          return Number(row.n);
        };
        const told = (hostId: string, kind: string) =>
          poll(
            `${kind} of ${hostId}`,
            async () => ((await count(hostId, kind)) > 0 ? true : undefined),
            30_000,
          );

        // h2 enrolls through the follower B, heartbeats to A (accepted once A has read its new
        // pins, at B's announcement), then fails over to B, then stops.
        const h2 = await enrollThrough(endpointsB.admin, 'h2', await freePort());
        let beats2 = beating(h2, endpointsA.worker);
        await told(h2.hostId, 'host.online');
        await beats2.stop();
        beats2 = beating(h2, endpointsB.worker);
        // Long enough past the offline age for a sweep by A that did not see B's heartbeats.
        await sleep(4 * HEARTBEAT_INTERVAL_MS);
        await beats2.stop();
        await told(h2.hostId, 'host.offline');

        // h3 (enrolled through B) holds a live connection to B; its decommission goes through A.
        const h3 = await enrollThrough(endpointsB.admin, 'h3', await freePort());
        const c3 = workerClient(endpointsB.worker, agentMaterial(h3));
        const disconnected = once(c3, 'disconnect');
        expect((await postJson(c3, '/v1/heartbeat', heartbeatBody(h3.hostId))).status).toBe(200);
        const gone = await adminA<{ host: { status: string } }>('POST', '/v1/hosts/h3/decommission');
        expect(gone.status).toBe(200);
        expect(gone.body.host.status).toBe('decommissioned');
        await Promise.race([
          disconnected,
          sleep(20_000).then(() => {
            throw new Error('the live connection on B was not closed');
          }),
        ]);
        const again = await postJson(c3, '/v1/heartbeat', heartbeatBody(h3.hostId)).catch((e: unknown) => e);
        expect(again).not.toMatchObject({ status: 200 });
        await c3.destroy();

        // h1 heartbeats to A, whose deploy to it hangs (its agent port never answers).
        const h1 = await enrollThrough(endpointsA.admin, 'h1', silentPort);
        const beats1 = beating(h1, endpointsA.worker);
        await told(h1.hostId, 'host.online');
        const deploying = adminA('POST', '/v1/deploy', {
          spec: {
            services: [
              { name: 'web', command: '/bin/sh', args: ['-c', 'exec sleep 300'], restart: 'always' },
            ],
          },
        }).catch(() => undefined /* A is killed while it waits */);
        const opId = await poll(
          'a deploy running',
          async () => {
            const ops = await ctlB.deployer.operations.list(5);
            const op = ops.find((o) => o.kind === 'deploy' && o.state === 'running');
            return op && held.length > 0 ? op.id : undefined;
          },
          20_000,
        );
        process.kill(daemonA.pid, 'SIGKILL');
        aAlive = false;
        await beats1.stop();
        await deploying;

        await poll('b leads', async () => (ctlB.cluster.isLeader() ? true : undefined), 30_000);
        const ended = await poll(
          'operation ended',
          async () => {
            const d = await ctlB.deployer.operations.detail(opId);
            return d && d.operation.state !== 'running' ? d : undefined;
          },
          30_000,
        );
        expect(ended.operation).toMatchObject({ state: 'failed', reason: RESTART_REASON });
        await told(h1.hostId, 'host.offline');

        expect({
          h1: [
            await count(h1.hostId, 'host.enrolled'),
            await count(h1.hostId, 'host.online'),
            await count(h1.hostId, 'host.offline'),
          ],
          h2: [
            await count(h2.hostId, 'host.enrolled'),
            await count(h2.hostId, 'host.online'),
            await count(h2.hostId, 'host.offline'),
          ],
          h3: [await count(h3.hostId, 'host.enrolled'), await count(h3.hostId, 'host.decommissioned')],
        }).toEqual({ h1: [1, 1, 1], h2: [1, 1, 1], h3: [1, 1] });
      } finally {
        for (const c of cleanups) await c().catch(() => undefined /* best effort */);
      }
    }, 180_000);
  },
);

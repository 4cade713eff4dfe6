/**
 * Agents fail over between controllers, with the TLS checks kept: two `controller serve`
 * processes on one private PostgreSQL database (B on a copy of A's state dir), a real
 * `agent serve` enrolled through A whose bundle lists both worker APIs. A is killed with
 * SIGKILL and its worker port taken over at once by a TLS server holding a `controller`
 * certificate from another CA: the agent refuses it (no request reaches it) and its heartbeats
 * arrive at B, where the host stays online. `serve --advertise` refuses a name the controller's
 * certificate does not carry.
 */
import { once } from 'node:events';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { createServer, type Server } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { describe, expect, it } from 'vitest';
import { spawnDaemon, type Daemon } from '../cli/up/daemon.js';
import { runCorral } from '../cli/up/corral-cli.js';
import { freePort } from '../cli/up/free-port.js';
import { isolatedEnv } from '../cli/up/local-controller.js';
import { parseHostPort } from '../kit/host-port.js';
import { createCa, loadBundle } from '../pki/index.js';
import { CLI, poll } from './fleet-fixture.js';
import {
  clusterEndpoints,
  clusterHostsOn,
  clusterServeArgs,
  enrollClusterWorker,
  sharedControllerStates,
  spawnClusterAgent,
} from './cluster-fixture.js';
import { postgresSkipReason, startPostgres } from './postgres-fixture.js';

const HEARTBEAT_INTERVAL_MS = 1000;
const skip = postgresSkipReason();

describe.skipIf(skip !== undefined)(
  `agent failover between controllers on one PostgreSQL${skip ? ` (skipped: ${skip})` : ''}`,
  () => {
    it('a bundle from A lists A and B; after kill -9 of A the agent skips an impostor and heartbeats to B', async () => {
      const pg = await startPostgres();
      const dir = await mkdtemp(join(tmpdir(), 'corral-failover-'));
      const daemons: Daemon[] = [];
      let impostor: Server | undefined;
      const env = isolatedEnv();
      try {
        const url = await pg.createDatabase();
        const { a, b } = await sharedControllerStates(dir, url);
        const serveArgs = (d: string, extra: readonly string[] = []): string[] =>
          clusterServeArgs(d, url, ['--heartbeat-interval', `${HEARTBEAT_INTERVAL_MS}ms`, ...extra]);

        const refused = await runCorral(
          CLI,
          [...serveArgs(b, ['--advertise', 'elsewhere.example']).slice(1)],
          {
            env,
          },
        );
        expect(refused.code).not.toBe(0);
        expect(refused.stderr).toContain('does not name it');

        // B on a fixed worker port, so it can come back at the address the bundle names.
        const portB = await freePort();
        const fixedB = [
          '--advertise',
          '127.0.0.1',
          '--worker-listen',
          `127.0.0.1:${portB}`,
          '--join-listen',
          '127.0.0.1:0',
          '--syslog-listen',
          '127.0.0.1:0',
        ];
        const running = new Map<string, Daemon>();
        const start = async (d: string, name: string): Promise<{ admin: string; worker: string }> => {
          await rm(join(d, 'run', 'endpoints.json'), { force: true });
          const daemon = await spawnDaemon({
            name,
            command: process.execPath,
            args: d === b ? [...serveArgs(d), ...fixedB] : serveArgs(d),
            logFile: join(dir, `${name}.log`),
            env,
          });
          daemons.push(daemon);
          running.set(name, daemon);
          return clusterEndpoints(d, name);
        };
        const kill = async (name: string): Promise<void> => {
          const daemon = running.get(name);
          daemon?.signal('SIGKILL');
          await daemon?.exited;
        };
        const endA = await start(a, 'a');
        let endB = await start(b, 'b');
        const token = (await readFile(join(a, 'admin-token'), 'utf8')).trim();
        const hostsOn = (admin: string) => clusterHostsOn(admin, token);

        const worker = join(dir, 'w1');
        const agentPort = await freePort();
        const enrolled = await enrollClusterWorker({
          admin: endA.admin,
          token,
          name: 'w1',
          agentPort,
          outDir: join(worker, 'bundle'),
          env,
        });
        const bundle = await loadBundle(join(worker, 'bundle'));
        expect(bundle.manifest.controller).toBe(endA.worker);
        expect(bundle.manifest.controllers).toEqual([endA.worker, endB.worker]);
        expect(enrolled.controllers).toEqual([endA.worker, endB.worker]);

        daemons.push(
          await spawnClusterAgent({
            worker,
            agentPort,
            heartbeatIntervalMs: HEARTBEAT_INTERVAL_MS,
            logFile: join(dir, 'agent.log'),
            env,
          }),
        );
        await poll('w1 online through A', async () =>
          (await hostsOn(endA.admin)).find((h) => h.id === enrolled.hostId && h.status === 'online'),
        );

        // B has the pins of a host enrolled through A at once (announced on corral_changes), so
        // A can die right away.

        // A dies; a server with another CA's `controller` certificate takes its address at once.
        const otherCa = await createCa();
        const fake = await otherCa.issue({
          role: 'controller',
          commonName: 'controller',
          ipAddresses: ['127.0.0.1'],
          dnsNames: ['localhost'],
        });
        let impostorConnections = 0;
        let impostorRequests = 0;
        const server = createServer({ cert: fake.certPem, key: fake.keyPem }, (req, res) => {
          impostorRequests++;
          req.resume();
          res.writeHead(200, { 'content-type': 'application/json' }).end('{}');
        });
        server.on('connection', () => impostorConnections++);
        impostor = server;
        await kill('a');
        const killedAt = Date.now();
        server.listen(parseHostPort(endA.worker).port, '127.0.0.1');
        await once(server, 'listening');

        const lastSeenOnB = async (after: number) => {
          const host = (await hostsOn(endB.admin)).find((h) => h.id === enrolled.hostId);
          return host?.lastSeen && Date.parse(host.lastSeen) > after ? host : undefined;
        };
        const onlineOnB = async (after: number) => {
          const host = await lastSeenOnB(after);
          return host?.status === 'online' ? host : undefined;
        };
        const seen = await poll('w1 online through B', () => onlineOnB(killedAt), 5 * HEARTBEAT_INTERVAL_MS);
        // It stays with B: still online, seen again, a few intervals later.
        await sleep(3 * HEARTBEAT_INTERVAL_MS);
        await poll(
          'w1 still online through B',
          () => onlineOnB(Date.parse(seen.lastSeen ?? '') + 2 * HEARTBEAT_INTERVAL_MS),
          3 * HEARTBEAT_INTERVAL_MS,
        );

        // With B down too, only the impostor answers: the agent keeps trying it and refusing it.
        await kill('b');
        const tried = impostorConnections;
        await poll('the agent tries the impostor', async () =>
          impostorConnections > tried ? true : undefined,
        );
        const downAt = Date.now();
        endB = await start(b, 'b2');
        expect(endB.worker).toBe(`127.0.0.1:${portB}`);
        await poll('w1 online through B again', () => onlineOnB(downAt), 30_000);
        expect(impostorRequests).toBe(0);
        const agentLog = await readFile(join(dir, 'agent.log'), 'utf8');
        expect(agentLog).toContain('controller unreachable; trying the next one');
      } finally {
        for (const d of daemons.reverse()) await d.stop();
        impostor?.close();
        await pg.stop();
        await rm(dir, { recursive: true, force: true });
      }
    }, 180_000);
  },
);

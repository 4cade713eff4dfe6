/**
 * Logs fail over between controllers, and an agent learns of controllers added after it was
 * enrolled: two `controller serve` processes on one private PostgreSQL database (B on a copy
 * of A's state dir). w1 is enrolled through A while A is the only controller, so its bundle
 * names A alone; B starts afterwards. The agent's heartbeat answers bring the list of both
 * (kept in controllers.json), and the forwarder, started with no address of its own, takes
 * the syslog listeners from it. A is killed with SIGKILL mid-stream: lines go on arriving at
 * B, none is lost, each controller has each line at most once, and the lines both have fit in
 * the unacknowledged window the forwarder counted; the agent's heartbeats go to B. Then A
 * comes back at new addresses (learned only from B's heartbeat answers) and B is killed with
 * SIGKILL mid-stream: lines and heartbeats go to the new A, again none lost or twice on one.
 */
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { spawnDaemon, type Daemon } from '../cli/up/daemon.js';
import { freePort } from '../cli/up/free-port.js';
import { isolatedEnv } from '../cli/up/local-controller.js';
import { readControllerList } from '../kit/controller-list-file.js';
import { loadBundle } from '../pki/index.js';
import { poll } from './fleet-fixture.js';
import {
  clusterEndpoints,
  clusterHostsOn,
  clusterServeArgs,
  enrollClusterWorker,
  sharedControllerStates,
  spawnClusterAgent,
} from './cluster-fixture.js';
import {
  appendSlowly,
  exactlyOnceProblem,
  killHard,
  sequencesIn,
  spawnForwarder,
  writeLines,
  type Cleanups,
} from './logs-fixtures.js';
import { postgresSkipReason, startPostgres } from './postgres-fixture.js';

const HEARTBEAT_INTERVAL_MS = 1000;
const TOTAL_LINES = 20_000;
/** logLine's default: 200 characters and the LF. */
const LINE_BYTES = 201;
const skip = postgresSkipReason();

/** Every sequence number in the host's ingest files under a controller's state dir. */
async function ingested(stateDir: string): Promise<number[]> {
  const dir = join(stateDir, 'logs', 'hosts');
  const names = await readdir(dir).catch(() => [] as string[] /* nothing ingested yet */);
  const out: number[] = [];
  for (const name of names.filter((n) => n.startsWith('w1.') && n.endsWith('.log')).sort()) {
    out.push(...(await sequencesIn(join(dir, name))));
  }
  return out;
}

const repeats = (seqs: readonly number[]): number => seqs.length - new Set(seqs).size;

describe.skipIf(skip !== undefined)(
  `logs and controller lists across controllers on one PostgreSQL${skip ? ` (skipped: ${skip})` : ''}`,
  () => {
    it('an agent enrolled with A alone learns of B; kill -9 of A, then of B: lines and heartbeats go on, none lost', async () => {
      const pg = await startPostgres();
      const dir = await mkdtemp(join(tmpdir(), 'corral-logs-failover-'));
      const daemons: Daemon[] = [];
      const cleanups: Cleanups = [];
      const env = isolatedEnv();
      try {
        const url = await pg.createDatabase();
        const { a, b } = await sharedControllerStates(dir, url);
        const running = new Map<string, Daemon>();
        const start = async (d: string, name: string) => {
          await rm(join(d, 'run', 'endpoints.json'), { force: true });
          const daemon = await spawnDaemon({
            name,
            command: process.execPath,
            args: clusterServeArgs(d, url, [
              '--heartbeat-interval',
              `${HEARTBEAT_INTERVAL_MS}ms`,
              '--advertise',
              '127.0.0.1',
              '--join-listen',
              '127.0.0.1:0',
              '--syslog-listen',
              '127.0.0.1:0',
            ]),
            logFile: join(dir, `${name}.log`),
            env,
          });
          daemons.push(daemon);
          running.set(name, daemon);
          return clusterEndpoints(d, name, true);
        };
        const endA = await start(a, 'a');
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
        expect(bundle.manifest.controllers).toBeUndefined();
        expect(bundle.manifest.syslog).toBe(endA.syslog);

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
        const alone = await poll('the agent keeps a list naming A', () => readControllerList(worker), 30_000);
        expect(alone.controllers).toEqual([{ worker: endA.worker, syslog: endA.syslog }]);

        // B starts after w1 was enrolled: the bundle never names it; a heartbeat answer does.
        const endB = await start(b, 'b');
        const kept = await poll(
          'the agent keeps a list naming B',
          async () => {
            const list = await readControllerList(worker);
            return list?.controllers.length === 2 ? list : undefined;
          },
          30_000,
        );
        expect(kept.controllers).toEqual([
          { worker: endA.worker, syslog: endA.syslog },
          { worker: endB.worker, syslog: endB.syslog },
        ]);

        // The forwarder has no address of its own: it dials the kept list's listeners, A first.
        const file = join(worker, 'logs', 'app.log');
        await writeLines(file, 0, 2000);
        const forwarder = spawnForwarder(cleanups, worker, [file], ['--log-level', 'info']);
        const writing = appendSlowly(file, 2000, TOTAL_LINES, { perStep: 100, stepMs: 20 });
        await poll('lines at A', async () => ((await ingested(a)).length >= 4000 ? true : undefined), 60_000);
        running.get('a')?.signal('SIGKILL');
        await running.get('a')?.exited;
        const killedAt = Date.now();
        const atA = await ingested(a);
        expect(atA.length).toBeLessThan(TOTAL_LINES);
        await writing;

        const atB = await poll(
          'every line at A or B',
          async () => {
            const seqs = await ingested(b);
            const all = new Set([...atA, ...seqs]);
            return all.size === TOTAL_LINES ? seqs : undefined;
          },
          90_000,
        );
        // Nothing lost, nothing twice on one controller: A has a prefix, B all from where A's
        // acknowledgements ended (at or before A's end) to the last line, each once, in order.
        expect(repeats(atA)).toBe(0);
        const resumedAt = atB[0] ?? -1;
        expect(resumedAt).toBeGreaterThanOrEqual(0);
        expect(resumedAt).toBeLessThanOrEqual(atA.length);
        expect(exactlyOnceProblem(atA, atA.length)).toBeUndefined();
        expect(exactlyOnceProblem(atB, TOTAL_LINES - resumedAt, resumedAt)).toBeUndefined();

        // What both have is within the window A never acknowledged, which the forwarder counted.
        const onBoth = atA.filter((s) => atB.includes(s)).length;
        const failover = await poll(
          'the forwarder says it failed over',
          async () => {
            for (const line of forwarder.output().split('\n')) {
              if (!line.includes('syslog failed over to another controller')) continue;
              return JSON.parse(line) as { from: string; controller: string; failoverUnackedBytes: number };
            }
            return undefined;
          },
          10_000,
        );
        expect(failover.from).toBe(endA.syslog);
        expect(failover.controller).toBe(endB.syslog);
        expect(onBoth * LINE_BYTES).toBeLessThanOrEqual(failover.failoverUnackedBytes);
        process.stdout.write(
          `logs failover: ${atA.length} lines at A before kill -9, ${atB.length} at B, ${onBoth} on both, ` +
            `${failover.failoverUnackedBytes} bytes unacknowledged at the failover\n`,
        );

        // The agent's heartbeats go to B (an address it learned from a heartbeat answer).
        const onlineOn = (admin: string, after: number) =>
          poll(
            'w1 online',
            async () => {
              const host = (await hostsOn(admin)).find((h) => h.id === enrolled.hostId);
              return host?.lastSeen && Date.parse(host.lastSeen) > after && host.status === 'online'
                ? host
                : undefined;
            },
            10 * HEARTBEAT_INTERVAL_MS,
          );
        await onlineOn(endB.admin, killedAt);

        // A comes back at new addresses, which neither the bundle nor the kept list names yet:
        // B's heartbeat answers bring them. Then B dies mid-stream too, and everything goes to
        // the new A: heartbeats and lines.
        const endA2 = await start(a, 'a2');
        expect(endA2.worker).not.toBe(endA.worker);
        await poll(
          'the agent keeps a list naming the new A',
          async () => {
            const list = await readControllerList(worker);
            return list?.controllers.some((c) => c.worker === endA2.worker && c.syslog === endA2.syslog)
              ? list
              : undefined;
          },
          30_000,
        );
        const writingMore = appendSlowly(file, TOTAL_LINES, 2 * TOTAL_LINES, { perStep: 100, stepMs: 20 });
        await poll(
          'more lines at B',
          async () => ((await ingested(b)).length >= atB.length + 2000 ? true : undefined),
          60_000,
        );
        running.get('b')?.signal('SIGKILL');
        await running.get('b')?.exited;
        const secondKillAt = Date.now();
        const atB2 = await ingested(b);
        await writingMore;
        const atA2 = await poll(
          'every line at A or B',
          async () => {
            const seqs = await ingested(a);
            return new Set([...seqs, ...atB2]).size === 2 * TOTAL_LINES ? seqs : undefined;
          },
          90_000,
        );
        expect(repeats(atA2)).toBe(0);
        expect(repeats(atB2)).toBe(0);
        const inA2 = new Set(atA2);
        const repeated = atB2.filter((s) => inA2.has(s)).length;
        await onlineOn(endA2.admin, secondKillAt);
        await killHard(forwarder);
        const failovers = forwarder
          .output()
          .split('\n')
          .filter((l) => l.includes('syslog failed over to another controller'))
          .map((l) => JSON.parse(l) as { from: string; controller: string; failoverUnackedBytes: number });
        expect(failovers.map((f) => `${f.from}->${f.controller}`)).toEqual([
          `${endA.syslog}->${endB.syslog}`,
          `${endB.syslog}->${endA2.syslog}`,
        ]);
        const counted = failovers.at(-1)?.failoverUnackedBytes ?? 0;
        expect(repeated * LINE_BYTES).toBeLessThanOrEqual(counted);
        process.stdout.write(
          `logs failover, second: ${atB2.length} lines at B before kill -9, ${atA2.length} at A, ` +
            `${repeated} on both, ${counted} bytes unacknowledged at both failovers\n`,
        );
      } finally {
        while (cleanups.length > 0) await cleanups.pop()?.();
        for (const d of daemons.reverse()) await d.stop();
        await pg.stop();
        await rm(dir, { recursive: true, force: true });
      }
    }, 240_000);
  },
);

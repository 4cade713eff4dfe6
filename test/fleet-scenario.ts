import { afterAll, beforeAll, expect, it } from 'vitest';
import type { LocalFleet } from '../cli/up/local-fleet.js';
import type { DeployResponse, ServiceView } from '../protocol/deployment.js';
import type { OperationDetail } from '../protocol/operations.js';
import { readFile } from 'node:fs/promises';
import {
  deploy,
  fleetCli,
  findFiles,
  hostsJson,
  isAlive,
  loggingSpec,
  pidsWithMarker,
  placementOf,
  poll,
  recordedPids,
  servicesJson,
} from './fleet-fixture.js';

export interface FleetScenarioOptions {
  /** Marks this run's service processes (unique per test file; the scenario adds its pid). */
  readonly tag: string;
  readonly services: number;
  start(): Promise<LocalFleet>;
  /** After the fleet is closed (even when it never started). */
  cleanup?(): Promise<void>;
}

const STEP_TIMEOUT_MS = 120_000;

/**
 * The end-to-end scenario of issue 5, against a fleet of real `corral` processes: deploy and
 * see every service running; kill -9 one agent and see its host go stale then offline while
 * its services keep running (unknown to the controller); restart it and see it online with its
 * services re-adopted; redeploy and see placement unchanged; deploy with one agent down and
 * see only that host's services fail. Every command goes through the CLI but two that race a
 * liveness window a CLI start-up can eat on a loaded machine: the watch for stale and the deploy
 * while an agent is down go to the admin API, and the CLI then shows what they saw.
 */
export function fleetScenario(o: FleetScenarioOptions): void {
  let fleet: LocalFleet | undefined;
  // Markers are looked up machine-wide in /proc: the pid keeps another checkout's run of the
  // same file (a shared CI machine) out of this run's counts.
  const tag = `${o.tag}-${process.pid}`;
  const spec = loggingSpec(o.services, tag);
  const seenPids = new Set<number>();
  let placement: Record<string, string> = {};
  const f = (): LocalFleet => {
    if (!fleet) throw new Error('the fleet did not start');
    return fleet;
  };
  const rowsOf = (rows: ServiceView[], host: string): ServiceView[] => rows.filter((r) => r.host === host);

  beforeAll(async () => {
    fleet = await o.start();
  }, 240_000);

  afterAll(async () => {
    try {
      if (fleet) {
        const report = await fleet.close();
        expect(report.errors).toEqual([]);
      }
      for (const pid of seenPids) expect(await isAlive(pid), `service pid ${pid} after close`).toBe(false);
      for (const s of spec.services) expect(await pidsWithMarker(`MARK-${tag}-${s.name}`)).toEqual([]);
    } finally {
      await o.cleanup?.();
    }
  }, 180_000);

  it(
    'deploys through the CLI and sees every service running',
    async () => {
      const names = f().workers.map((w) => w.name);
      const res = await deploy(f(), spec);
      expect(res.ok).toBe(true);
      expect(res.exitCode).toBe(0);
      expect(res.plan).toHaveLength(o.services);
      expect(res.hosts.map((h) => [h.host, h.outcome]).sort()).toEqual(names.map((n) => [n, 'applied']));
      placement = placementOf(res.plan);
      expect(new Set(Object.values(placement))).toEqual(new Set(names));

      const rows = await poll('every service running', async () => {
        const r = await servicesJson(f());
        return r.length === o.services && r.every((s) => s.observed === 'running') ? r : undefined;
      });
      expect(placementOf(rows)).toEqual(placement);
      for (const w of f().workers) {
        const pids = await recordedPids(w);
        expect(Object.keys(pids).sort()).toEqual(
          rowsOf(rows, w.name)
            .map((r) => r.service)
            .sort(),
        );
        for (const pid of Object.values(pids)) {
          expect(await isAlive(pid)).toBe(true);
          seenPids.add(pid);
        }
      }
    },
    STEP_TIMEOUT_MS,
  );

  it(
    "carries every worker's service output home (forwarder → the controller's syslog listener)",
    async () => {
      expect(f().syslog).toBe(true);
      for (const w of f().workers) {
        const mine = Object.entries(placement).find(([, host]) => host === w.name)?.[0];
        await poll(`${w.name}'s lines at the controller`, async () => {
          const dir = f().controller.stateDir;
          const named = await findFiles(dir, `${w.name}.${w.hostId}.log`);
          for (const file of [...named, ...(await findFiles(dir, `${w.hostId}.log`))]) {
            const text = await readFile(file, 'utf8');
            if (text.includes(`${tag} ${mine} on ${w.name}`)) return true;
          }
          return undefined;
        });
      }
    },
    STEP_TIMEOUT_MS,
  );

  it(
    'kill -9 of one agent: its host goes stale then offline, its services keep running as unknown',
    async () => {
      const victim = f().workers[1]!;
      const before = await recordedPids(victim);
      expect(Object.keys(before).length).toBeGreaterThan(0);
      expect(victim.agent.signal('SIGKILL')).toBe(true);
      await victim.agent.exited;

      // Stale lasts one heartbeat interval (3 s here): the admin API is polled directly, a few
      // ms a read, since a CLI process per read can take most of that window on a loaded machine.
      const seen: string[] = [];
      await poll(
        'host offline',
        async () => {
          const host = (await f().controller.hosts()).find((h) => h.name === victim.name);
          if (host && seen.at(-1) !== host.status) seen.push(host.status);
          return host?.status === 'offline' ? true : undefined;
        },
        60_000,
        50,
      );
      expect(seen).toEqual(['online', 'stale', 'offline'].slice(seen[0] === 'online' ? 0 : 1));
      expect((await hostsJson(f())).find((h) => h.name === victim.name)?.status).toBe('offline');

      for (const pid of Object.values(before)) expect(await isAlive(pid)).toBe(true);
      const rows = await servicesJson(f());
      expect(rowsOf(rows, victim.name).map((r) => r.observed)).toEqual(
        Object.keys(before).map(() => 'unknown'),
      );
      for (const r of rows.filter((x) => x.host !== victim.name)) expect(r.observed).toBe('running');
    },
    STEP_TIMEOUT_MS,
  );

  it(
    'restarted, the agent is online again and has re-adopted its services',
    async () => {
      const victim = f().workers[1]!;
      const before = await recordedPids(victim);
      await victim.startAgent();
      await f().controller.waitForHosts([victim.name], ['online']);
      await poll('the services of the restarted host running', async () => {
        const rows = rowsOf(await servicesJson(f()), victim.name);
        return rows.length > 0 && rows.every((r) => r.observed === 'running') ? rows : undefined;
      });
      expect(await recordedPids(victim)).toEqual(before);
      for (const service of Object.keys(before)) {
        expect(await pidsWithMarker(`MARK-${tag}-${service}`)).toEqual([before[service]]);
      }
      const hosts = await hostsJson(f());
      expect(hosts.map((h) => h.status)).toEqual(f().workers.map(() => 'online'));
    },
    STEP_TIMEOUT_MS,
  );

  it(
    'a redeploy of the same spec keeps every service where it was',
    async () => {
      const res = await deploy(f(), spec);
      expect(res.ok).toBe(true);
      expect(placementOf(res.plan)).toEqual(placement);
      expect(res.plan.every((p) => p.change === 'kept')).toBe(true);
      const rows = await servicesJson(f());
      expect(placementOf(rows)).toEqual(placement);
      for (const w of f().workers) {
        for (const pid of Object.values(await recordedPids(w))) expect(seenPids.has(pid)).toBe(true);
      }
    },
    STEP_TIMEOUT_MS,
  );

  it(
    "a deploy while one agent is down fails only that host's services",
    async () => {
      const down = f().workers[2]!;
      // Its services stay placed on it only while its host is online: two intervals after its
      // last heartbeat (6 s at the fleet tests' 3 s). A CLI process alone took more than that to
      // start on a loaded machine, so the agent is stopped just after a fresh heartbeat and the
      // deploy goes straight to the admin API; the CLI then shows the operation it made.
      const lastSeen = async (): Promise<string | null | undefined> =>
        (await f().controller.hosts()).find((h) => h.name === down.name)?.lastSeen;
      const seenBefore = await lastSeen();
      await poll('a fresh heartbeat of the host to stop', async () =>
        (await lastSeen()) !== seenBefore ? true : undefined,
      );
      await down.agent.stop();
      const changed = {
        services: spec.services.map((s) => ({ ...s, env: { RELEASE: 'two' } })),
      };
      const res = await f().controller.admin.post<DeployResponse>('/v1/deploy', {
        spec: changed,
        dryRun: false,
      });
      expect(res.ok).toBe(false);
      const outcome = Object.fromEntries(res.hosts.map((h) => [h.host, h.outcome]));
      for (const w of f().workers) expect(outcome[w.name]).toBe(w === down ? 'failed' : 'applied');
      expect(placementOf(res.plan), 'placement (the stopped host still online when placed)').toEqual(
        placement,
      );
      const shown = await fleetCli(f(), ['controller', 'ops', 'show', res.operationId ?? '', '--json']);
      expect(shown.code).toBe(0);
      const op = JSON.parse(shown.stdout) as OperationDetail;
      expect(op.operation).toMatchObject({ kind: 'deploy', state: 'partial' });
      expect(op.steps.map((st) => [st.host, st.state]).sort()).toEqual(
        f().workers.map((w) => [w.name, w === down ? 'failed' : 'succeeded']),
      );
      const followed = await fleetCli(f(), ['controller', 'ops', 'show', res.operationId ?? '', '--follow']);
      expect(followed.code).toBe(1);

      const rows = await poll('the other hosts running the new spec', async () => {
        const r = await servicesJson(f());
        const others = r.filter((x) => x.host !== down.name);
        return others.every((x) => x.observed === 'running') ? r : undefined;
      });
      const failed = rowsOf(rows, down.name);
      expect(failed.length).toBeGreaterThan(0);
      for (const r of failed) expect(r.observed).toBe('failed');
      for (const r of rows.filter((x) => x.host !== down.name)) expect(r.observed).toBe('running');
      for (const pid of Object.values(await recordedPids(down))) seenPids.add(pid);
      for (const w of f().workers) for (const pid of Object.values(await recordedPids(w))) seenPids.add(pid);
    },
    STEP_TIMEOUT_MS,
  );
}

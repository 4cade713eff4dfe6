import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { closeSync, openSync } from 'node:fs';
import { readdir, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCorral } from '../cli/up/corral-cli.js';
import { isolatedEnv } from '../cli/up/local-controller.js';
import { startLocalFleet, type LocalFleet } from '../cli/up/local-fleet.js';
import type { LocalWorker } from '../cli/up/local-worker.js';
import type { DecommissionResponse } from '../protocol/admin-hosts.js';
import type { HostView } from '../protocol/host.js';
import {
  CLI,
  deploy,
  fleetCli,
  hostsJson,
  isAlive,
  loggingSpec,
  pidsWhere,
  poll,
  recordedPids,
  tempDir,
} from './fleet-fixture.js';

/**
 * Decommission leaves nothing of Corral behind on a worker that is not under systemd: real
 * `corral` processes (controller, agent, updater, forwarder) and real services on loopback.
 * Needs the build (`npx tsc -p .`): the daemons run `bin/corral.js`.
 */
const HEARTBEAT_INTERVAL_MS = 1_000;
let dir: string;
let fleet: LocalFleet;
const started: ChildProcess[] = [];

beforeAll(async () => {
  dir = await tempDir('wipe');
  fleet = await startLocalFleet({
    dir,
    cli: CLI,
    workers: ['wipe-live', 'wipe-offline'].map((name) => ({ name, address: '127.0.0.1' })),
    heartbeatIntervalMs: HEARTBEAT_INTERVAL_MS,
    startTimeoutMs: 120_000,
  });
  const spec = loggingSpec(4, 'wipe');
  const res = await deploy(fleet, spec);
  expect(res.exitCode).toBe(0);
  await poll(
    'every service running',
    async () => {
      const counts = await Promise.all(
        fleet.workers.map(async (w) => Object.keys(await recordedPids(w)).length),
      );
      return counts.every((n) => n >= 2) ? true : undefined;
    },
    120_000,
    250,
  );
}, 300_000);

afterAll(async () => {
  for (const child of started)
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  await fleet?.close();
  if (dir) await rm(dir, { recursive: true, force: true });
}, 120_000);

/** Every pid of a Corral process or service of this worker, from what it started and /proc. */
async function workerPids(w: LocalWorker): Promise<Record<string, number>> {
  const services = await recordedPids(w);
  const daemons: Record<string, number> = { agent: w.agent.pid };
  if (w.updater) daemons.updater = w.updater.pid;
  if (w.forwarder) daemons.forwarder = w.forwarder.pid;
  return { ...daemons, ...services };
}

/** Live processes whose command line names the worker's state dir or one of its services. */
const corralLeftovers = (w: LocalWorker): Promise<number[]> =>
  pidsWhere((cmdline) => cmdline.includes(w.stateDir));

/** Files left in the state dir, relative, with directories named by a trailing slash. */
async function filesUnder(root: string, rel = ''): Promise<string[]> {
  const out: string[] = [];
  for (const e of await readdir(join(root, rel), { withFileTypes: true }).catch(() => [])) {
    const path = rel ? `${rel}/${e.name}` : e.name;
    if (e.isDirectory()) out.push(`${path}/`, ...(await filesUnder(root, path)));
    else out.push(path);
  }
  return out;
}

const hostOf = async (name: string): Promise<HostView> => {
  const host = (await hostsJson(fleet)).find((h) => h.name === name && h.status === 'decommissioned');
  if (!host) throw new Error(`no decommissioned host ${name}`);
  return host;
};

/** Starts one worker daemon as `corral up` does, its output to a file outside the state dir. */
function startDaemon(name: string, args: readonly string[]): { child: ChildProcess; log: string } {
  const log = join(dir, `${name}.out`);
  const fd = openSync(log, 'a', 0o600);
  try {
    const child = spawn(process.execPath, [CLI.bin, ...args], {
      stdio: ['ignore', fd, fd],
      env: isolatedEnv(),
    });
    started.push(child);
    return { child, log };
  } finally {
    closeSync(fd);
  }
}

const exitOf = async (child: ChildProcess): Promise<number | null> => {
  if (child.exitCode !== null || child.signalCode !== null) return child.exitCode;
  const [code] = (await once(child, 'exit')) as [number | null];
  return code;
};

describe('decommission leaves nothing behind', () => {
  it('a running worker: no Corral process and no Corral file but its logs, then shown wiped', async () => {
    const w = fleet.worker('wipe-live');
    const pids = await workerPids(w);
    expect(Object.keys(pids)).toEqual(expect.arrayContaining(['agent', 'updater', 'forwarder']));
    expect(Object.keys(pids).filter((k) => k.startsWith('svc-')).length).toBeGreaterThanOrEqual(2);
    // The dry run lists the updater and forwarder beside the agent and the services.
    const dry = await runCorral(
      CLI,
      ['agent', 'self-destruct', '--dry-run', '--json', '--state-dir', w.stateDir],
      {
        env: isolatedEnv(),
      },
    );
    expect(dry.code).toBe(0);
    const plan = JSON.parse(dry.stdout) as {
      agent: number;
      daemons: string[];
      services: string[];
      delete: string[];
    };
    expect(plan.services.length).toBe(Object.keys(pids).filter((k) => k.startsWith('svc-')).length);
    expect(plan.agent).toBe(pids.agent);
    expect(plan.daemons.sort()).toEqual(
      [`forwarder (pid ${pids.forwarder})`, `updater (pid ${pids.updater})`].sort(),
    );
    expect(plan.delete).toContain(w.stateDir);

    const r = await fleetCli(fleet, ['controller', 'decommission', 'wipe-live', '--yes', '--json']);
    expect(r.code).toBe(0);
    expect((JSON.parse(r.stdout) as DecommissionResponse).selfDestruct.ok).toBe(true);

    await poll(
      'every process of the worker gone',
      async () => {
        const alive = await Promise.all(Object.values(pids).map((pid) => isAlive(pid)));
        return alive.some(Boolean) ? undefined : true;
      },
      120_000,
      250,
    );
    const host = await poll(
      'the wipe reported',
      async () => {
        const h = await hostOf('wipe-live');
        return h.wipe === 'wiped' ? h : undefined;
      },
      60_000,
      250,
    );
    expect(host.wipedAt).not.toBeNull();
    for (const [what, pid] of Object.entries(pids))
      expect({ what, alive: await isAlive(pid) }).toEqual({ what, alive: false });
    expect(await corralLeftovers(w)).toEqual([]);
    // Only the log directory is left, with the reaper's last line in it.
    const left = await filesUnder(w.stateDir);
    expect(left.filter((p) => !p.startsWith('logs/'))).toEqual([]);
    expect(left).toContain('logs/');
    const log = await readFile(join(w.stateDir, 'logs', 'worker.log'), 'utf8');
    // One reaper, though both the controller's call and a heartbeat's 410 asked for it.
    expect(
      log.match(/self-destruct finished: \d+ daemons and \d+ services stopped, \d+ paths deleted, 0 errors/g),
    ).toHaveLength(1);
    const table = await fleetCli(fleet, ['controller', 'hosts']);
    expect(table.stdout).toMatch(/wipe-live\s.*decommissioned \(wiped\)/);
  }, 300_000);

  it('a worker decommissioned while its daemons were stopped: updater and forwarder exit 0, the agent wipes at first contact', async () => {
    const w = fleet.worker('wipe-offline');
    const services = await recordedPids(w);
    expect(Object.keys(services).length).toBeGreaterThanOrEqual(2);
    await w.stopDaemons();

    const r = await fleetCli(fleet, ['controller', 'decommission', 'wipe-offline', '--yes', '--json']);
    expect(r.code).toBe(0);
    expect((JSON.parse(r.stdout) as DecommissionResponse).selfDestruct.ok).toBe(false);
    expect(await hostOf('wipe-offline')).toMatchObject({ wipe: 'pending', wipedAt: null });
    const pendingTable = await fleetCli(fleet, ['controller', 'host', 'wipe-offline']);
    expect(pendingTable.stdout).toMatch(/status\s+decommissioned \(wipe pending\)/);
    // Its services still run: nothing could stop them yet.
    for (const pid of Object.values(services)) expect(await isAlive(pid)).toBe(true);

    // The updater and the forwarder, started again alone: each is told and exits 0 with one line.
    const updater = startDaemon('offline-updater', [
      'updater',
      'serve',
      '--state-dir',
      w.stateDir,
      '--root',
      join(w.stateDir, 'root'),
      '--listen',
      `127.0.0.1:${w.updaterPort}`,
    ]);
    const forwarder = startDaemon('offline-forwarder', [
      'forwarder',
      'run',
      '--state-dir',
      w.stateDir,
      '--file',
      join(w.stateDir, 'logs', 'worker.log'),
    ]);
    const updaterExit = await exitOf(updater.child);
    expect(updaterExit, await readFile(updater.log, 'utf8')).toBe(0);
    const forwarderExit = await exitOf(forwarder.child);
    expect(forwarderExit, await readFile(forwarder.log, 'utf8')).toBe(0);
    for (const out of [updater.log, forwarder.log]) {
      const lines = (await readFile(out, 'utf8')).split('\n').filter((l) => l.includes('decommissioned'));
      expect(lines).toHaveLength(1);
    }
    // Nothing was wiped by them: that is the agent's job.
    expect(await hostOf('wipe-offline')).toMatchObject({ wipe: 'pending' });

    // The agent, started again: wipes itself at its first heartbeat.
    const agent = startDaemon('offline-agent', [
      'agent',
      'serve',
      '--state-dir',
      w.stateDir,
      '--listen',
      `127.0.0.1:${w.agentPort}`,
      '--heartbeat-interval',
      `${HEARTBEAT_INTERVAL_MS}ms`,
      '--no-systemd',
    ]);
    const agentExit = await exitOf(agent.child);
    expect(agentExit, await readFile(agent.log, 'utf8')).toBe(0);
    await poll(
      'the services stopped',
      async () =>
        (await Promise.all(Object.values(services).map(isAlive))).some(Boolean) ? undefined : true,
      120_000,
      250,
    );
    await poll(
      'the wipe reported',
      async () => ((await hostOf('wipe-offline')).wipe === 'wiped' ? true : undefined),
      60_000,
      250,
    );
    expect(await corralLeftovers(w)).toEqual([]);
    const left = await filesUnder(w.stateDir);
    expect(left.filter((p) => !p.startsWith('logs/'))).toEqual([]);
    expect(await readFile(join(w.stateDir, 'logs', 'worker.log'), 'utf8')).toMatch(/self-destruct finished/);
    const table = await fleetCli(fleet, ['controller', 'host', 'wipe-offline']);
    expect(table.stdout).toMatch(/status\s+decommissioned \(wiped\)/);
  }, 300_000);
});

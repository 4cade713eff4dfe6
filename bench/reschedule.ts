import { cpus, loadavg, tmpdir } from 'node:os';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { runCorral, type CorralCommand } from '../cli/up/corral-cli.js';
import { startLocalFleet, type LocalFleet } from '../cli/up/local-fleet.js';
import { OFFLINE_AFTER_INTERVALS } from '../protocol/constants.js';
import type { DeploymentSpec } from '../protocol/deployment.js';
import { place, type CandidateHost, type PlaceableService } from '../controller/deploy/placement.js';
import { fmt, median } from './lib/stats.js';

/**
 * `npm run bench -- reschedule [--workers 20] [--services 10] [--kill 5] [--heartbeat-ms 1000]
 * [--reschedule-after 2s] [--skip-fleet]`:
 *
 * 1. A controller (`--reschedule-after`) and `--workers` agents, each a separate `corral`
 *    process on this machine, `--services` per worker. kill -9 of `--kill` agents at once;
 *    measured from the reschedule deadline (the last of their last heartbeats + 3 intervals
 *    until offline + the delay) to every one of their services observed running on another
 *    host (the controller's services list, which heartbeats feed: up to one interval behind).
 * 2. Placement alone (the pure function): 10,000 services over 1,000 hosts, some with label
 *    constraints, first from nothing and then with 10% of the hosts lost; median of 7 runs.
 */
function arg(args: string[], name: string, fallback: number): number {
  const i = args.indexOf(`--${name}`);
  const value = i >= 0 ? Number(args[i + 1]) : fallback;
  if (!Number.isInteger(value) || value < 1) throw new Error(`--${name} must be a positive integer`);
  return value;
}

const CLI: CorralCommand = {
  bin: join(resolve(dirname(fileURLToPath(import.meta.url)), '..', '..'), 'bin', 'corral.js'),
};
const POLL_MS = 50;
const TIMEOUT_MS = 300_000;

function placementBench(): void {
  const hosts: CandidateHost[] = Array.from({ length: 1_000 }, (_, i) => ({
    name: `host-${String(i).padStart(4, '0')}`,
    labels: { zone: `z${i % 4}`, ...(i % 10 === 0 && { gpu: 'yes' }) },
  }));
  const services: PlaceableService[] = Array.from({ length: 10_000 }, (_, i) => ({
    name: `svc-${i}`,
    ...(i % 5 === 0 && { placement: { labels: { zone: `z${i % 4}` } } }),
    ...(i % 50 === 0 && { placement: { labels: { gpu: 'yes' } } }),
  }));
  const fresh: number[] = [];
  const lost: number[] = [];
  for (let run = 0; run < 7; run++) {
    let t0 = performance.now();
    const first = place(services, hosts, []);
    fresh.push(performance.now() - t0);
    const current = first.decisions.map((d) => ({ instance: d.instance, host: d.host }));
    const after = hosts.map((h, i) => (i % 10 === 3 ? { ...h, accepts: false, holds: false } : h));
    t0 = performance.now();
    const again = place(services, after, current);
    lost.push(performance.now() - t0);
    if (first.pending.length > 0 || again.pending.length > 0)
      throw new Error('placement left instances pending');
  }
  console.log(
    `placement of 10,000 services over 1,000 hosts (pure function): median ${fmt(median(fresh), 1)} ms from nothing, ` +
      `${fmt(median(lost), 1)} ms with 100 hosts lost (7 runs each; fastest ${fmt(Math.min(...fresh), 1)} / ${fmt(Math.min(...lost), 1)} ms; ` +
      `load ${loadavg()
        .map((l) => l.toFixed(1))
        .join(' ')} on ${cpus().length} cores)`,
  );
}

async function observedRunning(fleet: LocalFleet, victims: ReadonlySet<string>, names: ReadonlySet<string>) {
  const rows = await fleet.controller.services();
  return rows.filter(
    (r) =>
      names.has(r.service) && r.desired === 'running' && !victims.has(r.host) && r.observed === 'running',
  ).length;
}

async function fleetBench(args: string[]): Promise<void> {
  const workers = arg(args, 'workers', 20);
  const perWorker = arg(args, 'services', 10);
  const kill = arg(args, 'kill', 5);
  const heartbeatIntervalMs = arg(args, 'heartbeat-ms', 1000);
  const i = args.indexOf('--reschedule-after');
  const rescheduleAfter = i >= 0 ? (args[i + 1] ?? '2s') : '2s';
  const rescheduleAfterMs = Number(/^(\d+)s$/.exec(rescheduleAfter)?.[1] ?? Number.NaN) * 1000;
  if (!Number.isFinite(rescheduleAfterMs))
    throw new Error('--reschedule-after must be whole seconds, e.g. 2s');
  const total = workers * perWorker;
  const dir = await mkdtemp(join(tmpdir(), 'corral-bench-reschedule-'));
  let fleet: LocalFleet | undefined;
  try {
    const started = performance.now();
    fleet = await startLocalFleet({
      dir,
      cli: CLI,
      workers: Array.from({ length: workers }, (_, n) => ({ name: `w-${n + 1}`, address: '127.0.0.1' })),
      heartbeatIntervalMs,
      updater: false,
      forwarder: false,
      startTimeoutMs: 180_000,
      serveArgs: ['--reschedule-after', rescheduleAfter],
    });
    console.log(
      `reschedule: ${workers} workers × ${perWorker} services (${total}), kill -9 of ${kill} agents; every agent its own \`corral agent serve\` process`,
    );
    console.log(
      `node ${process.version}, ${cpus().length} cores, load ${loadavg()
        .map((l) => l.toFixed(1))
        .join(' ')}; heartbeat interval ${heartbeatIntervalMs} ms, reschedule after ${rescheduleAfter}; ` +
        `fleet up in ${fmt((performance.now() - started) / 1000)} s`,
    );
    const spec: DeploymentSpec = {
      services: Array.from({ length: total }, (_, n) => ({
        name: `rs-${String(n + 1).padStart(3, '0')}`,
        command: 'sh',
        args: ['-c', 'while true; do sleep 5; done'],
        restart: 'always' as const,
      })),
    };
    const file = join(dir, 'spec.json');
    await writeFile(file, JSON.stringify(spec));
    const cmd = await runCorral(
      CLI,
      ['controller', 'deploy', file, '--json', '--state-dir', fleet.controller.stateDir],
      { env: fleet.controller.env },
    );
    if (cmd.code !== 0) throw new Error(`deploy failed: ${cmd.stderr}${cmd.stdout.slice(0, 2000)}`);
    const all = new Set(spec.services.map((s) => s.name));
    const deadline0 = performance.now() + TIMEOUT_MS;
    while ((await observedRunning(fleet, new Set(), all)) < total) {
      if (performance.now() > deadline0) throw new Error('the deploy did not come up in time');
      await sleep(POLL_MS);
    }
    const victims = fleet.workers.slice(0, kill);
    const victimNames = new Set(victims.map((w) => w.name));
    const movedNames = new Set(
      (await fleet.controller.services()).filter((r) => victimNames.has(r.host)).map((r) => r.service),
    );
    for (const w of victims) w.agent.signal('SIGKILL');
    await Promise.all(victims.map((w) => w.agent.exited));
    // Their last heartbeats, as the controller recorded them, give the reschedule deadline.
    await sleep(heartbeatIntervalMs);
    const hosts = await fleet.controller.hosts();
    const lastSeen = Math.max(
      ...hosts.filter((h) => victimNames.has(h.name)).map((h) => Date.parse(h.lastSeen ?? '')),
    );
    const deadlineMs = lastSeen + OFFLINE_AFTER_INTERVALS * heartbeatIntervalMs + rescheduleAfterMs;
    const stop = performance.now() + TIMEOUT_MS;
    while ((await observedRunning(fleet, victimNames, movedNames)) < movedNames.size) {
      if (performance.now() > stop) throw new Error('the moved services did not come up in time');
      await sleep(POLL_MS);
    }
    const doneMs = Date.now();
    console.log(
      `${movedNames.size} services of ${kill} killed hosts observed running elsewhere ${fmt((doneMs - deadlineMs) / 1000, 2)} s ` +
        `after the reschedule deadline (includes up to one heartbeat interval for the controller to see them run)`,
    );
  } finally {
    const report = await fleet?.close();
    for (const e of report?.errors ?? []) console.error(`cleanup: ${e}`);
    await rm(dir, { recursive: true, force: true });
  }
}

export async function run(args: string[]): Promise<void> {
  if (!args.includes('--skip-fleet')) await fleetBench(args);
  placementBench();
}

import { cpus, loadavg, tmpdir } from 'node:os';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { renderTable } from '../cli/output.js';
import { runCorral, type CorralCommand } from '../cli/up/corral-cli.js';
import { startLocalFleet, type LocalFleet } from '../cli/up/local-fleet.js';
import type { DeployResponse, DeploymentSpec } from '../protocol/deployment.js';
import type { OperationDetail } from '../protocol/operations.js';
import { fmt, median } from './lib/stats.js';

/**
 * `npm run bench -- deploy [--workers 20] [--services 10] [--rounds 3] [--heartbeat-ms 1000]`:
 * a controller and `--workers` agents, each a separate `corral` process on this machine, and
 * a deployment of `--services` per worker (sh loops). Each round deploys a fresh set of
 * service names through `corral controller deploy` (round 1 starts them all; later rounds
 * replace the previous round's, so every service stops and a new one starts) and reports:
 * the dispatch fan-out alone (first per-host step started → last finished, from the
 * operation's steps), the deploy command's wall time, the time until every service runs on
 * the workers (their agents' records on disk), and the time until the controller observes
 * every one running (its services list, which heartbeats feed: up to one interval behind).
 */
function arg(args: string[], name: string, fallback: number): number {
  const i = args.indexOf(`--${name}`);
  const value = i >= 0 ? Number(args[i + 1]) : fallback;
  if (!Number.isInteger(value) || value < 1) throw new Error(`--${name} must be a positive integer`);
  return value;
}

/** The real CLI: this file runs compiled, from dist/bench/. */
const CLI: CorralCommand = {
  bin: join(resolve(dirname(fileURLToPath(import.meta.url)), '..', '..'), 'bin', 'corral.js'),
};
const POLL_MS = 25;
const ROUND_TIMEOUT_MS = 300_000;

function specFor(round: number, total: number): DeploymentSpec {
  return {
    services: Array.from({ length: total }, (_, i) => ({
      name: `r${round}-svc-${String(i + 1).padStart(3, '0')}`,
      command: 'sh',
      args: ['-c', 'while true; do echo "alive on ${host.name}"; sleep 5; done'],
      restart: 'always' as const,
    })),
  };
}

/** Names of the services whose agent records say `running`, over every worker. */
async function runningOnWorkers(fleet: LocalFleet, prefix: string): Promise<number> {
  let count = 0;
  for (const w of fleet.workers) {
    const root = join(w.stateDir, 'services');
    for (const name of await readdir(root).catch(() => [] as string[])) {
      if (!name.startsWith(prefix)) continue;
      const text = await readFile(join(root, name, 'state.json'), 'utf8').catch(() => '');
      if (text && (JSON.parse(text) as { state?: string }).state === 'running') count++;
    }
  }
  return count;
}

async function waitFor(what: string, check: () => Promise<boolean>): Promise<number> {
  const deadline = performance.now() + ROUND_TIMEOUT_MS;
  while (!(await check())) {
    if (performance.now() > deadline) throw new Error(`${what}: not reached in time`);
    await sleep(POLL_MS);
  }
  return performance.now();
}

interface RoundResult {
  fanOutMs: number;
  commandMs: number;
  workersMs: number;
  observedMs: number;
}

async function deployRound(fleet: LocalFleet, round: number, total: number): Promise<RoundResult> {
  const file = join(fleet.dir, `round-${round}.json`);
  await writeFile(file, JSON.stringify(specFor(round, total)));
  const prefix = `r${round}-`;
  const t0 = performance.now();
  const cmd = await runCorral(
    CLI,
    ['controller', 'deploy', file, '--json', '--state-dir', fleet.controller.stateDir],
    { env: fleet.controller.env },
  );
  const commandMs = performance.now() - t0;
  if (cmd.code !== 0) throw new Error(`deploy failed: ${cmd.stderr}${cmd.stdout.slice(0, 2000)}`);
  const res = JSON.parse(cmd.stdout) as DeployResponse;
  const onWorkers = waitFor('every service running on the workers', async () => {
    return (await runningOnWorkers(fleet, prefix)) === total;
  });
  const observed = waitFor('every service observed running', async () => {
    const rows = (await fleet.controller.services()).filter((s) => s.service.startsWith(prefix));
    return rows.length === total && rows.every((s) => s.observed === 'running');
  });
  const [tWorkers, tObserved] = await Promise.all([onWorkers, observed]);
  const detail = await fleet.controller.admin.get<OperationDetail>(`/v1/ops/${res.operationId ?? ''}`);
  const started = detail.steps.map((s) => Date.parse(s.startedAt ?? ''));
  const finished = detail.steps.map((s) => Date.parse(s.finishedAt ?? ''));
  return {
    fanOutMs: Math.max(...finished) - Math.min(...started),
    commandMs,
    workersMs: tWorkers - t0,
    observedMs: tObserved - t0,
  };
}

export async function run(args: string[]): Promise<void> {
  const workers = arg(args, 'workers', 20);
  const perWorker = arg(args, 'services', 10);
  const roundCount = arg(args, 'rounds', 3);
  const heartbeatIntervalMs = arg(args, 'heartbeat-ms', 1000);
  const total = workers * perWorker;
  const dir = await mkdtemp(join(tmpdir(), 'corral-bench-deploy-'));
  let fleet: LocalFleet | undefined;
  try {
    const started = performance.now();
    fleet = await startLocalFleet({
      dir,
      cli: CLI,
      workers: Array.from({ length: workers }, (_, i) => ({ name: `w-${i + 1}`, address: '127.0.0.1' })),
      heartbeatIntervalMs,
      updater: false,
      forwarder: false,
      startTimeoutMs: 180_000,
    });
    console.log(
      `deploy: ${workers} workers × ${perWorker} services (${total}), every agent its own \`corral agent serve\` process on this machine`,
    );
    console.log(
      `node ${process.version}, ${cpus().length} cores, load ${loadavg()
        .map((l) => l.toFixed(1))
        .join(
          ' ',
        )}; heartbeat interval ${heartbeatIntervalMs} ms; fleet up in ${fmt((performance.now() - started) / 1000)} s`,
    );
    console.log('');
    const results: RoundResult[] = [];
    for (let round = 1; round <= roundCount; round++) {
      results.push(await deployRound(fleet, round, total));
    }
    console.log(
      renderTable(
        ['round', 'fan-out ms', 'deploy cmd ms', 'running on workers ms', 'observed running ms'],
        results.map((r, i) => [
          i === 0 ? '1 (start)' : `${i + 1} (replace)`,
          fmt(r.fanOutMs, 0),
          fmt(r.commandMs, 0),
          fmt(r.workersMs, 0),
          fmt(r.observedMs, 0),
        ]),
      ).trimEnd(),
    );
    const m = (pick: (r: RoundResult) => number): string => fmt(median(results.map(pick)), 0);
    console.log('');
    console.log(
      `median: fan-out ${m((r) => r.fanOutMs)} ms; deploy → all running on workers ${m((r) => r.workersMs)} ms; ` +
        `deploy → all observed running ${m((r) => r.observedMs)} ms (includes up to one heartbeat interval)`,
    );
  } finally {
    const report = await fleet?.close();
    for (const e of report?.errors ?? []) console.error(`cleanup: ${e}`);
    await rm(dir, { recursive: true, force: true });
  }
}

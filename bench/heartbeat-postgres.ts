import { cp, mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { initControllerState, toDatabaseTarget } from '../controller/index.js';
import { startPostgres } from '../test/postgres-fixture.js';
import { startControllerProcess, type ControllerProcess } from './lib/controller-process.js';
import {
  driveHeartbeats,
  enrollSimulated as enroll,
  type Run,
  type SimulatedWorker,
} from './lib/heartbeat-load.js';
import { fmt, percentile } from './lib/stats.js';

/**
 * `npm run bench -- heartbeat --database postgres [--workers N] [--seconds S]` (or
 * `heartbeat-postgres`): the heartbeat closed loop of `heartbeat` against, in one run and one
 * after the other, a controller on its SQLite file, one controller on a private PostgreSQL
 * cluster (durable: fsync and synchronous commit on, as SQLite's commits are synced), and two
 * controllers on that same database with the workers split between them (the second on a copy
 * of the first's state dir, as the README's "several controllers" says). Prints each rate, p99
 * and the ratios: PostgreSQL to SQLite, and two controllers to one (issue 19's goal: ≥ 1.6).
 * Everything runs on this machine: two controllers, PostgreSQL and the load generator share
 * its cores, so the two-controller figure is a floor for separate machines, not a forecast.
 */
const DEFAULT_WORKERS = 200;
const DEFAULT_SECONDS = 10;
const GOAL_TWO_CONTROLLERS = 1.6;

function arg(args: string[], name: string, fallback: number): number {
  const i = args.indexOf(name);
  const v = i >= 0 ? Number(args[i + 1]) : fallback;
  if (!Number.isInteger(v) || v <= 0) throw new Error(`${name} must be a positive integer`);
  return v;
}

/** Heartbeats per second over all of `runs` (they ran at the same time, each `seconds` long). */
const rateOf = (runs: readonly Run[]): number => runs.reduce((sum, r) => sum + r.count / r.seconds, 0);

/** Controller CPU per heartbeat over `runs`, in µs (each run's own server's CPU over its own count). */
const controllerCpuUs = (runs: readonly Run[]): number =>
  (runs.reduce((sum, r) => sum + r.serverCpuMs, 0) * 1000) / runs.reduce((sum, r) => sum + r.count, 0);

const CLOCK_TICKS_PER_S = 100;

/** utime + stime (+ cutime + cstime with `children`) of one /proc stat line, in ms. */
function statCpuMs(stat: string, children: boolean): { ppid: number; ms: number } {
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const ticks = Number(f[11]) + Number(f[12]) + (children ? Number(f[13]) + Number(f[14]) : 0);
  return { ppid: Number(f[1]), ms: (ticks * 1000) / CLOCK_TICKS_PER_S };
}

/**
 * CPU the private PostgreSQL cluster on `port` has used so far, in ms: its postmaster (found by
 * `-p PORT` on its command line), its live children, and the children that already exited.
 */
async function clusterCpuMs(port: number): Promise<number> {
  const pids = (await readdir('/proc')).filter((d) => /^\d+$/.test(d));
  const stats = new Map<string, string>();
  let postmaster: string | undefined;
  for (const pid of pids) {
    const [stat, cmdline] = await Promise.all([
      readFile(`/proc/${pid}/stat`, 'utf8').catch(() => ''),
      readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => ''),
    ]);
    if (stat === '') continue;
    stats.set(pid, stat);
    const argv = cmdline.split('\0');
    if (argv.some((a) => a.endsWith('/postgres')) && argv.includes('-p') && argv.includes(String(port)))
      postmaster = pid;
  }
  if (postmaster === undefined) return Number.NaN;
  let total = 0;
  for (const [pid, stat] of stats) {
    const { ppid, ms } = statCpuMs(stat, pid === postmaster);
    if (pid === postmaster || String(ppid) === postmaster) total += ms;
  }
  return total;
}

function line(label: string, runs: readonly Run[]): number {
  const rate = rateOf(runs);
  const latencies = runs.flatMap((r) => r.latenciesMs);
  const errors = runs.reduce((sum, r) => sum + r.errors, 0);
  console.log(
    `${label.padEnd(40)} ${fmt(rate).padStart(8)} /s   p50 ${fmt(percentile(latencies, 50), 2).padStart(7)} ms` +
      `   p99 ${fmt(percentile(latencies, 99), 2).padStart(7)} ms   errors ${errors}`,
  );
  return rate;
}

export async function run(args: string[]): Promise<void> {
  const n = arg(args, '--workers', DEFAULT_WORKERS);
  const seconds = arg(args, '--seconds', DEFAULT_SECONDS);
  // No heartbeat budget: each simulated worker posts as fast as answers come back.
  const serveArgs = [
    '--no-heartbeat-budget',
    '--join-listen',
    '127.0.0.1:0',
    '--syslog-listen',
    '127.0.0.1:0',
  ];
  const pg = await startPostgres({ durable: true });
  const dir = await mkdtemp(join(tmpdir(), 'corral-bench-hbpg-'));
  try {
    console.log(
      `heartbeat, SQLite beside PostgreSQL: ${n} workers, one persistent mTLS connection each, ${seconds}s ` +
        `measured after the connect storm; node ${process.version}, ${cpus().length} cores, load ` +
        loadavg()
          .map((l) => fmt(l, 2))
          .join(' '),
    );
    console.log('');
    const drive = (c: ControllerProcess, workers: readonly SimulatedWorker[]) =>
      driveHeartbeats(c.endpoints.worker ?? '', workers, {
        seconds,
        warmup: 'auto',
        serverPid: c.child.pid ?? 0,
      });

    const sqliteDir = join(dir, 'sqlite');
    await initControllerState({ stateDir: sqliteDir });
    const onSqlite = await startControllerProcess(sqliteDir, serveArgs);
    const sqliteRun = await drive(onSqlite, await enroll(onSqlite, n));
    await onSqlite.stop();

    const url = await pg.createDatabase();
    const a = join(dir, 'pg-a');
    const b = join(dir, 'pg-b');
    await initControllerState({ stateDir: a, database: toDatabaseTarget(url) });
    const first = await startControllerProcess(a, [...serveArgs, '--database', url]);
    const workers = await enroll(first, n);
    // PostgreSQL's CPU over each whole drive (warm-up included), per heartbeat answered.
    const pgCpuUs = async (go: () => Promise<Run[]>): Promise<{ runs: Run[]; us: number }> => {
      const before = await clusterCpuMs(pg.port);
      const started = process.hrtime.bigint();
      const runs = await go();
      const after = await clusterCpuMs(pg.port);
      const wallS = Number(process.hrtime.bigint() - started) / 1e9;
      // The runs count heartbeats in their measured window only; scale to the whole drive.
      const answered = runs.reduce((sum, r) => sum + (r.count / r.seconds) * wallS, 0);
      return { runs, us: ((after - before) * 1000) / answered };
    };
    const one = await pgCpuUs(async () => [await drive(first, workers)]);
    const pgRun = one.runs[0] as Run;

    // The second controller: the same CA, identities and token, on the same database.
    await cp(a, b, { recursive: true, filter: (src) => !src.startsWith(join(a, 'run')) });
    const second = await startControllerProcess(b, [...serveArgs, '--database', url]);
    const half = Math.ceil(workers.length / 2);
    const two = await pgCpuUs(() =>
      Promise.all([drive(first, workers.slice(0, half)), drive(second, workers.slice(half))]),
    );
    const both = two.runs;
    await second.stop();
    await first.stop();

    const sqliteRate = line('one controller, SQLite', [sqliteRun]);
    const pgRate = line('one controller, PostgreSQL', [pgRun]);
    const twoRate = line(`two controllers, one PostgreSQL (${half} + ${n - half})`, both);
    console.log('');
    console.log(`PostgreSQL / SQLite, one controller: ${fmt(pgRate / sqliteRate, 2)}`);
    const ratio = twoRate / pgRate;
    console.log(
      `two controllers / one, PostgreSQL: ${fmt(ratio, 2)}   goal ≥ ${GOAL_TWO_CONTROLLERS}: ${ratio >= GOAL_TWO_CONTROLLERS ? 'met' : 'NOT met'}`,
    );
    // What sharing the database costs each controller, in its own CPU: the measured ratio above
    // is bound by these 2 cores, a controller's CPU per heartbeat is not.
    const c1 = controllerCpuUs([pgRun]);
    const c2 = controllerCpuUs(both);
    console.log(
      `controller CPU per heartbeat: one ${fmt(c1, 1)} µs, two ${fmt(c2, 1)} µs each (two / one ${fmt(c2 / c1, 2)})`,
    );
    console.log(
      `PostgreSQL CPU per heartbeat (approx., whole drive): one controller ${fmt(one.us, 1)} µs, two ${fmt(two.us, 1)} µs`,
    );
    console.log(
      `projected two / one with a core for each controller (2 × one / two in controller CPU, ` +
        `PostgreSQL and the workers elsewhere; not measured): ${fmt((2 * c1) / c2, 2)}`,
    );
    console.log(
      `  (both controllers, PostgreSQL and the ${n} simulated workers share these ${cpus().length} cores; ` +
        `load average now ${loadavg()
          .map((l) => fmt(l, 2))
          .join(' ')})`,
    );
  } finally {
    await pg.stop();
    await rm(dir, { recursive: true, force: true });
  }
}

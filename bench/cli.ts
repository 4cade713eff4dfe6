import { execFile } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { initControllerState } from '../controller/index.js';
import { mapConcurrent } from '../kit/concurrency.js';
import type { EnrollResponse } from '../protocol/enrollment.js';
import { moduleTraceArgs, tracedModules } from '../test/module-trace.js';
import { ROOT, startControllerProcess } from './lib/controller-process.js';
import { fmt, median } from './lib/stats.js';

/**
 * `npm run bench -- cli [--hosts N] [--runs R]`: wall time of one `corral` process from spawn
 * to exit, against a real `corral controller serve` holding N hosts enrolled through the admin
 * API. `controller hosts --json` (the whole list, paged, as JSON) beside `corral --version` and
 * bare `node -e 0` in the same run, runs interleaved; plus, from one traced run each, how many
 * modules the command's ES imports reached and whether any of them is the controller's.
 *
 * Each case runs twice over: in the environment the bench was given, and with
 * NODE_EXTRA_CA_CERTS removed when that is set. Node reads and parses that CA file as it
 * starts, before any of Corral's code runs (Corral never uses the system store: it pins its
 * own CA), so its cost is the environment's, the same for bare node; both are printed.
 * Beside the wall times, each run's CPU time (from bash's `times`, in runs of their own), the
 * figure a loaded machine moves least.
 */
const DEFAULT_HOSTS = 300;
const DEFAULT_RUNS = 15;
const ENROLL_CONCURRENCY = 8;
/** Goal (issue 13): `controller hosts --json` at 300 hosts. */
const GOAL_HOSTS_JSON_MS = 200;
const execFileAsync = promisify(execFile);

function arg(args: string[], name: string, fallback: number): number {
  const i = args.indexOf(name);
  const v = i >= 0 ? Number(args[i + 1]) : fallback;
  if (!Number.isInteger(v) || v <= 0) throw new Error(`${name} must be a positive integer`);
  return v;
}

interface Case {
  readonly label: string;
  readonly args: readonly string[];
  /** Checks the output is the whole answer; returns a short description of it. */
  readonly check: (stdout: string) => string;
}

/** An environment the children run in: the one given, or it without NODE_EXTRA_CA_CERTS. */
interface Env {
  readonly label: string;
  readonly env: NodeJS.ProcessEnv;
}

function environments(): Env[] {
  const given: Env = { label: 'as given', env: { ...process.env, CORRAL_HOME: undefined } };
  const extra = process.env.NODE_EXTRA_CA_CERTS;
  if (extra === undefined || extra === '') return [given];
  return [
    { label: `as given (NODE_EXTRA_CA_CERTS=${extra})`, env: given.env },
    { label: 'NODE_EXTRA_CA_CERTS removed', env: { ...given.env, NODE_EXTRA_CA_CERTS: undefined } },
  ];
}

async function timed(
  nodeArgs: readonly string[],
  env: NodeJS.ProcessEnv,
): Promise<{ ms: number; stdout: string }> {
  const t0 = performance.now();
  const { stdout } = await execFileAsync(process.execPath, [...nodeArgs], {
    maxBuffer: 64 * 1024 * 1024,
    env,
  });
  return { ms: performance.now() - t0, stdout };
}

/** `times` of bash: its own user and system time, then its children's. */
const TIMES = /^(\d+)m([\d.]+)s (\d+)m([\d.]+)s\n(\d+)m([\d.]+)s (\d+)m([\d.]+)s\s*$/;

/**
 * CPU time (user + system, all of its threads) of one run, from bash's `times` for its one
 * child: unlike wall time, hardly moved by other processes on a loaded machine. Output still
 * goes to a pipe, as in the timed runs.
 */
async function cpuTimed(nodeArgs: readonly string[], env: NodeJS.ProcessEnv): Promise<number> {
  const { stderr } = await execFileAsync(
    'bash',
    ['-c', '"$@"; times >&2', 'bash', process.execPath, ...nodeArgs],
    { maxBuffer: 64 * 1024 * 1024, env },
  );
  const m = TIMES.exec(stderr);
  if (!m) throw new Error(`cannot read the CPU time from: ${stderr}`);
  const sec = (min: string | undefined, s: string | undefined): number => Number(min) * 60 + Number(s);
  return (sec(m[5], m[6]) + sec(m[7], m[8])) * 1000;
}

export async function run(args: string[]): Promise<void> {
  const hosts = arg(args, '--hosts', DEFAULT_HOSTS);
  const runs = arg(args, '--runs', DEFAULT_RUNS);
  const dir = await mkdtemp(join(tmpdir(), 'corral-bench-cli-'));
  const corral = join(ROOT, 'bin', 'corral.js');
  try {
    await initControllerState({ stateDir: dir });
    const controller = await startControllerProcess(dir);
    try {
      await mapConcurrent(
        Array.from({ length: hosts }, (_, i) => i),
        ENROLL_CONCURRENCY,
        async (i) => {
          await controller.admin<EnrollResponse>('POST', '/v1/enroll', {
            name: `w-${i}`,
            address: `10.0.${i >> 8}.${i & 255}`,
          });
        },
      );
      const cases: Case[] = [
        { label: 'node -e 0 (bare node)', args: ['-e', '0'], check: () => 'no output' },
        {
          label: 'corral --version',
          args: [corral, '--version'],
          check: (out) => {
            if (!/^\d+\.\d+\.\d+/.test(out.trim())) throw new Error(`--version printed ${out}`);
            return out.trim();
          },
        },
        {
          label: 'corral controller hosts --json',
          args: [corral, 'controller', 'hosts', '--json', '--state-dir', dir],
          check: (out) => {
            const list = JSON.parse(out) as unknown[];
            if (list.length !== hosts) throw new Error(`hosts --json listed ${list.length} of ${hosts}`);
            return `${list.length} hosts, ${fmt(out.length / 1024, 0)} KiB`;
          },
        },
      ];
      const envs = environments();
      // samples[e][c]: the wall times of case c in environment e.
      const samples = envs.map(() => cases.map(() => [] as number[]));
      const cpu = envs.map(() => cases.map(() => [] as number[]));
      const seen = cases.map(() => '');
      for (let r = 0; r < runs; r++) {
        for (const [e, env] of envs.entries()) {
          for (const [i, c] of cases.entries()) {
            const { ms, stdout } = await timed(c.args, env.env);
            seen[i] = c.check(stdout);
            samples[e]?.[i]?.push(ms);
            cpu[e]?.[i]?.push(await cpuTimed(c.args, env.env));
          }
        }
      }
      const traces = await Promise.all(
        cases.map(async (c, i) => {
          const file = join(dir, `trace-${i}.txt`);
          await timed([...moduleTraceArgs(ROOT, file), ...c.args], envs[0]?.env ?? process.env);
          const urls = await tracedModules(file);
          const ours = urls.filter((u) => u.startsWith(`file://${ROOT}/dist/`));
          const controllerFiles = ours.filter((u) => u.includes('/dist/controller/'));
          return { urls: urls.length, ours: ours.length, controllerFiles: controllerFiles.length };
        }),
      );

      console.log(
        `cli: one corral process per run, spawn to exit, ${runs} runs each interleaved (and as many ` +
          `again under bash for the CPU time); ${hosts} hosts ` +
          `enrolled; node ${process.version}, ${cpus().length} cores, load ${loadavg()
            .map((l) => fmt(l, 2))
            .join(' ')}`,
      );
      for (const [i, c] of cases.entries()) {
        const t = traces[i];
        console.log(
          `  ${c.label.padEnd(32)} ES modules ${t?.urls ?? 0} (${t?.ours ?? 0} of Corral's, ` +
            `${t?.controllerFiles ?? 0} in controller/)   ${seen[i]}`,
        );
      }
      const medians = samples.map((byCase) => byCase.map((s) => median(s)));
      const cpuMedians = cpu.map((byCase) => byCase.map((s) => median(s)));
      for (const [e, env] of envs.entries()) {
        console.log('');
        console.log(`environment ${env.label}:`);
        for (const [i, c] of cases.entries()) {
          const s = samples[e]?.[i] ?? [];
          const over =
            i === 0 ? '' : `   bare node + ${fmt((medians[e]?.[i] ?? 0) - (medians[e]?.[0] ?? 0), 0)} ms`;
          console.log(
            `  ${c.label.padEnd(32)} median ${fmt(median(s), 0).padStart(5)} ms   ` +
              `(min ${fmt(Math.min(...s), 0)}, max ${fmt(Math.max(...s), 0)})   ` +
              `CPU median ${fmt(median(cpu[e]?.[i] ?? []), 0).padStart(4)} ms${over}`,
          );
        }
      }
      if (envs.length > 1) {
        console.log('');
        console.log(
          `NODE_EXTRA_CA_CERTS costs every node start (medians, given − removed, wall / CPU): ` +
            cases
              .map(
                (c, i) =>
                  `${c.label} ${fmt((medians[0]?.[i] ?? 0) - (medians[1]?.[i] ?? 0), 0)} / ` +
                  `${fmt((cpuMedians[0]?.[i] ?? 0) - (cpuMedians[1]?.[i] ?? 0), 0)} ms`,
              )
              .join(', '),
        );
      }
      console.log('');
      for (const [e, env] of envs.entries()) {
        const hostsMs = medians[e]?.[2] ?? Number.NaN;
        console.log(
          `goal: controller hosts --json at ${hosts} hosts < ${GOAL_HOSTS_JSON_MS} ms, environment ${env.label}: ` +
            `${fmt(hostsMs, 0)} ms ${hostsMs < GOAL_HOSTS_JSON_MS ? 'met' : 'NOT met'}`,
        );
      }
    } finally {
      await controller.stop();
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

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

async function timed(nodeArgs: readonly string[]): Promise<{ ms: number; stdout: string }> {
  const t0 = performance.now();
  const { stdout } = await execFileAsync(process.execPath, [...nodeArgs], {
    maxBuffer: 64 * 1024 * 1024,
    env: { ...process.env, CORRAL_HOME: undefined },
  });
  return { ms: performance.now() - t0, stdout };
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
      const samples = cases.map(() => [] as number[]);
      const seen = cases.map(() => '');
      for (let r = 0; r < runs; r++) {
        for (const [i, c] of cases.entries()) {
          const { ms, stdout } = await timed(c.args);
          seen[i] = c.check(stdout);
          samples[i]?.push(ms);
        }
      }
      const traces = await Promise.all(
        cases.map(async (c, i) => {
          const file = join(dir, `trace-${i}.txt`);
          await timed([...moduleTraceArgs(ROOT, file), ...c.args]);
          const urls = await tracedModules(file);
          const ours = urls.filter((u) => u.startsWith(`file://${ROOT}/dist/`));
          const controllerFiles = ours.filter((u) => u.includes('/dist/controller/'));
          return { urls: urls.length, ours: ours.length, controllerFiles: controllerFiles.length };
        }),
      );

      console.log(
        `cli: one corral process per run, spawn to exit, ${runs} runs each interleaved; ${hosts} hosts ` +
          `enrolled; node ${process.version}, ${cpus().length} cores, load ${loadavg()
            .map((l) => fmt(l, 2))
            .join(' ')}`,
      );
      console.log('');
      for (const [i, c] of cases.entries()) {
        const s = samples[i] ?? [];
        const t = traces[i];
        console.log(
          `${c.label.padEnd(34)} median ${fmt(median(s), 0).padStart(5)} ms   ` +
            `(min ${fmt(Math.min(...s), 0)}, max ${fmt(Math.max(...s), 0)})   ` +
            `ES modules ${t?.urls ?? 0} (${t?.ours ?? 0} of Corral's, ${t?.controllerFiles ?? 0} in controller/)   ${seen[i]}`,
        );
      }
      const hostsMs = median(samples[2] ?? []);
      console.log('');
      console.log(
        `goal: controller hosts --json at ${hosts} hosts < ${GOAL_HOSTS_JSON_MS} ms: ${fmt(hostsMs, 0)} ms ` +
          `${hostsMs < GOAL_HOSTS_JSON_MS ? 'met' : 'NOT met'}`,
      );
    } finally {
      await controller.stop();
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

import { mkdtemp, rm } from 'node:fs/promises';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { request } from 'undici';
import { initControllerState } from '../controller/index.js';
import { listHostPage } from '../controller/fleet/host-store.js';
import { openControllerState } from '../controller/state/open-state.js';
import type { HostListResponse } from '../protocol/admin-hosts.js';
import { seedHosts } from './fleet60k.js';
import { startControllerProcess } from './lib/controller-process.js';
import { fmt, median, percentile } from './lib/stats.js';

/**
 * `npm run bench -- hosts-view [--hosts N] [--rounds R]`: the dashboard's fleet read. N hosts
 * (with their pins and metrics, written into a real SQLite file), then R reads of
 * `GET /v1/hosts?limit=1000` from a real `corral controller serve` over loopback HTTP, and,
 * in this process on the same file, R builds of the same page by the controller's host store
 * alone (no HTTP, no response serialization), to tell the two costs apart.
 */
const DEFAULT_HOSTS = 1_000;
const DEFAULT_ROUNDS = 30;
const MAX_ROUNDS = 500;
const WARMUP_ROUNDS = 3;
const PAGE_LIMIT = 1_000;
const INTERVAL_MS = 30_000;
/** Issue 17: the fleet page of 1,000 hosts in under a second; this read is part of it. */
const GOAL_MEDIAN_MS = 100;

function arg(args: string[], name: string, fallback: number, max: number): number {
  const i = args.indexOf(name);
  const v = i >= 0 ? Number(args[i + 1]) : fallback;
  if (!Number.isInteger(v) || v <= 0 || v > max) throw new Error(`${name} must be an integer in 1..${max}`);
  return v;
}

function summary(label: string, ms: readonly number[]): string {
  return `${label}: median ${fmt(median(ms))} ms, p90 ${fmt(percentile(ms, 90))} ms, min ${fmt(Math.min(...ms))} ms (${ms.length} rounds)`;
}

export async function run(args: string[]): Promise<void> {
  const hosts = arg(args, '--hosts', DEFAULT_HOSTS, 100_000);
  const rounds = arg(args, '--rounds', DEFAULT_ROUNDS, MAX_ROUNDS);
  const dir = await mkdtemp(join(tmpdir(), 'corral-bench-hosts-view-'));
  try {
    const stateDir = join(dir, 'state');
    await initControllerState({ stateDir });
    await seedHosts(stateDir, hosts);

    const db = await openControllerState(stateDir);
    const storeMs: number[] = [];
    try {
      for (let i = 0; i < WARMUP_ROUNDS + rounds; i++) {
        const started = performance.now();
        const page = await listHostPage(
          db,
          { nowMs: Date.now(), intervalMs: INTERVAL_MS },
          { limit: Math.min(PAGE_LIMIT, hosts) },
        );
        const ms = performance.now() - started;
        if (page.hosts.length !== Math.min(PAGE_LIMIT, hosts)) throw new Error('short page from the store');
        if (i >= WARMUP_ROUNDS) storeMs.push(ms);
      }
    } finally {
      await db.destroy();
    }

    const c = await startControllerProcess(stateDir);
    const httpMs: number[] = [];
    let bytes = 0;
    try {
      for (let i = 0; i < WARMUP_ROUNDS + rounds; i++) {
        const started = performance.now();
        const res = await request(`${c.endpoints.admin ?? ''}/v1/hosts?limit=${PAGE_LIMIT}`, {
          headers: { authorization: `Bearer ${c.token}` },
        });
        const text = await res.body.text();
        const ms = performance.now() - started;
        if (res.statusCode !== 200) throw new Error(`GET /v1/hosts: ${res.statusCode} ${text.slice(0, 200)}`);
        const page = JSON.parse(text) as HostListResponse;
        if (page.hosts.length !== Math.min(PAGE_LIMIT, hosts)) throw new Error('short page over HTTP');
        bytes = text.length;
        if (i >= WARMUP_ROUNDS) httpMs.push(ms);
      }
    } finally {
      await c.stop();
    }

    const load = loadavg()[0] ?? Number.NaN;
    console.log(
      `hosts-view: ${hosts} hosts, page of ${Math.min(PAGE_LIMIT, hosts)}, ${fmt(bytes / 1024, 0)} KiB, ` +
        `${cpus().length} cores, load ${fmt(load)}`,
    );
    console.log(summary('  host store (listHostPage, in process)', storeMs));
    console.log(summary('  GET /v1/hosts over HTTP             ', httpMs));
    const verdict = median(httpMs) <= GOAL_MEDIAN_MS ? 'met' : 'NOT met';
    console.log(`  goal: GET median ≤ ${GOAL_MEDIAN_MS} ms: ${verdict}`);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

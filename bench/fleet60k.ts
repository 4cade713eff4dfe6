import { createHash, randomUUID } from 'node:crypto';
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { sql, type Insertable } from 'kysely';
import { request } from 'undici';
import { initControllerState } from '../controller/index.js';
import { openControllerState } from '../controller/state/open-state.js';
import type { HostsTable, PinsTable } from '../controller/db/schema.js';
import type { FleetHostStatusTable } from '../controller/events/event-tables.js';
import type { HostListResponse } from '../protocol/admin-hosts.js';
import type { EnrollResponse } from '../protocol/enrollment.js';
import { ROOT, startControllerProcess, type ControllerProcess } from './lib/controller-process.js';
import {
  driveHeartbeats,
  heartbeatClients,
  heartbeatRequest,
  mib,
  processCpuMs,
  processRssBytes,
  type Run,
  type SimulatedWorker,
} from './lib/heartbeat-load.js';
import { fmt, median, percentile } from './lib/stats.js';

/**
 * `npm run bench -- fleet60k [--hosts N] [--live L] [--seconds S] [--scrapes K]`: a real
 * `corral controller serve` whose database holds N enrolled hosts (rows written with the
 * controller's own database code before it starts: hosts and their active pins, spread over
 * online, stale, offline and pending), plus L workers enrolled through the admin API that
 * post heartbeats over mutual TLS. Measures start-up, RSS, `/metrics`, the host list page by
 * page, and the heartbeat rate and p99 with and without admin reads running beside them
 * (in the same run, one after the other).
 */
const DEFAULT_HOSTS = 60_000;
const DEFAULT_LIVE = 300;
const DEFAULT_SECONDS = 10;
const DEFAULT_SCRAPES = 10;
/** Page size the bench asks for (the list route's default when it has one). */
const PAGE_LIMIT = 500;
/** Hosts written per transaction while seeding. */
const SEED_ROWS_PER_TX = 500;
const HEARTBEAT_WARMUP_MS = 3_000;
/**
 * The liveness interval the controller is started with: long enough that no seeded host (they
 * never beat) changes status while the bench runs. At 30 s the 54k online ones all went stale
 * 40-60 s after start, and their transitions, written in one burst, landed in whichever phase
 * was running then (the heartbeats with reads, once the list walk got faster).
 */
const LIVENESS_INTERVAL_S = 600;
/** Goals (issue 13). */
const GOAL_METRICS_MS = 50;
const GOAL_PAGE_MS = 50;
const GOAL_P99_RATIO = 2;
const execFileAsync = promisify(execFile);

function arg(args: string[], name: string, fallback: number): number {
  const i = args.indexOf(name);
  const v = i >= 0 ? Number(args[i + 1]) : fallback;
  if (!Number.isInteger(v) || v <= 0) throw new Error(`${name} must be a positive integer`);
  return v;
}

const fingerprint = (seed: string): string => createHash('sha256').update(seed).digest('hex');

/**
 * Writes `count` hosts (and an agent and an updater pin each, the status the fleet events
 * last told of each, and for each host with a heartbeat the three services it reported, one
 * host in 40 with its second one failed, as a controller that saw them enroll and beat would
 * have left it) straight into the state's database. Last-seen times are moved forward by the
 * time the seeding took, so the fleet is as old as intended when the controller starts (a
 * slow seed on a loaded machine otherwise starts it with most hosts already stale or offline,
 * and their transitions written during the measurements).
 */
export async function seedHosts(stateDir: string, count: number): Promise<void> {
  const db = await openControllerState(stateDir);
  try {
    const now = Date.now();
    const metrics = JSON.stringify(heartbeatRequest('x').metrics);
    for (let start = 0; start < count; start += SEED_ROWS_PER_TX) {
      const hosts: Insertable<HostsTable>[] = [];
      const pins: Insertable<PinsTable>[] = [];
      const told: Insertable<FleetHostStatusTable>[] = [];
      for (let i = start; i < Math.min(count, start + SEED_ROWS_PER_TX); i++) {
        const id = randomUUID();
        // 90% seen within the last 20 s, 4% 2.5 intervals ago (stale), 4% four (offline), 2% never.
        const bucket = i % 50;
        const lastSeenMs =
          bucket < 45
            ? now - (i % 20_000)
            : bucket < 47
              ? now - 2.5 * LIVENESS_INTERVAL_S * 1000
              : bucket < 49
                ? now - 4 * LIVENESS_INTERVAL_S * 1000
                : null;
        const enrolledAt = new Date(now - 86_400_000 + i).toISOString();
        told.push({
          host_id: id,
          status: bucket < 45 ? 'online' : bucket < 47 ? 'stale' : bucket < 49 ? 'offline' : 'pending',
          changed_at: enrolledAt,
        });
        hosts.push({
          id,
          name: `host-${String(i).padStart(6, '0')}`,
          address: `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`,
          agent_port: 7443,
          updater_port: 7444,
          sans: '[]',
          labels: JSON.stringify({ env: i % 3 === 0 ? 'prod' : 'staging', zone: `z${i % 7}` }),
          enrolled_at: enrolledAt,
          enrolled_via: 'bundle',
          last_seen: lastSeenMs === null ? null : new Date(lastSeenMs).toISOString(),
          agent_version: lastSeenMs === null ? null : '0.1.0',
          generation: 3,
          metrics: lastSeenMs === null ? null : metrics,
          decommissioned_at: null,
          join_source: null,
          bundle_written_at: enrolledAt,
        });
        for (const role of ['agent', 'updater']) {
          pins.push({
            fingerprint: fingerprint(`${id}/${role}`),
            host_id: id,
            role,
            not_after: new Date(now + 90 * 86_400_000).toISOString(),
            active: 1,
            created_at: enrolledAt,
            superseded_at: null,
            retired_at: null,
          });
        }
      }
      await db.transaction().execute(async (trx) => {
        await trx.insertInto('hosts').values(hosts).execute();
        await trx.insertInto('fleet_host_status').values(told).execute();
        for (let i = 0; i < pins.length; i += SEED_ROWS_PER_TX) {
          await trx
            .insertInto('pins')
            .values(pins.slice(i, i + SEED_ROWS_PER_TX))
            .execute();
        }
      });
    }
    for (const [k, svc] of heartbeatRequest('x').services.entries()) {
      const failed = k === 1 ? sql`CAST(substr(name, 6) AS INTEGER) % 40 = 0` : sql`0`;
      await sql`INSERT INTO service_observed (host_id, service, state, restarts, pid, since, updated_at)
        SELECT id, ${svc.name}, CASE WHEN ${failed} THEN 'failed' ELSE ${svc.state} END,
          ${svc.restarts}, ${svc.pid}, ${svc.since}, last_seen
        FROM hosts WHERE last_seen IS NOT NULL AND name LIKE 'host-%'`.execute(db);
    }
    const shiftS = ((Date.now() - now) / 1000).toFixed(3);
    await sql`UPDATE hosts SET last_seen = strftime('%Y-%m-%dT%H:%M:%fZ', last_seen, ${`+${shiftS} seconds`})
      WHERE last_seen IS NOT NULL AND name LIKE 'host-%'`.execute(db);
  } finally {
    await db.destroy();
  }
}

async function timedGet(
  c: ControllerProcess,
  path: string,
): Promise<{ ms: number; status: number; text: string }> {
  const started = performance.now();
  const res = await request(`${c.endpoints.admin ?? ''}${path}`, {
    headers: { authorization: `Bearer ${c.token}` },
  });
  const text = await res.body.text();
  return { ms: performance.now() - started, status: res.statusCode, text };
}

interface ListWalk {
  readonly pages: number;
  readonly hosts: number;
  readonly pageMs: number[];
  readonly totalMs: number;
  readonly bytes: number;
  /** False: the controller has no paging (`?limit=` refused), the whole list came in one answer. */
  readonly paged: boolean;
}

/** Reads the whole host list, a page at a time when the controller pages. */
async function walkList(c: ControllerProcess): Promise<ListWalk> {
  const pageMs: number[] = [];
  let hosts = 0;
  let bytes = 0;
  const started = performance.now();
  let cursor: string | undefined;
  let paged = true;
  for (;;) {
    const path = paged
      ? `/v1/hosts?limit=${PAGE_LIMIT}${cursor === undefined ? '' : `&cursor=${encodeURIComponent(cursor)}`}`
      : '/v1/hosts';
    const r = await timedGet(c, path);
    if (r.status === 400 && paged && cursor === undefined) {
      paged = false;
      continue;
    }
    if (r.status !== 200) throw new Error(`GET ${path}: ${r.status} ${r.text.slice(0, 200)}`);
    const page = JSON.parse(r.text) as HostListResponse & { nextCursor?: string | null };
    pageMs.push(r.ms);
    hosts += page.hosts.length;
    bytes += r.text.length;
    if (!paged || page.nextCursor === undefined || page.nextCursor === null) break;
    cursor = page.nextCursor;
  }
  return { pages: pageMs.length, hosts, pageMs, totalMs: performance.now() - started, bytes, paged };
}

/** `corral controller hosts [--json]` through a real pipe: what arrived, and the CLI's own exit status. */
async function cliThroughPipe(
  stateDir: string,
  json: boolean,
): Promise<{ code: number; lines: number; bytes: number; items: number; ms: number }> {
  const out = join(stateDir, `hosts-${json ? 'json' : 'table'}.out`);
  const script = `"$NODE" "$CORRAL" controller hosts ${json ? '--json ' : ''}--state-dir "$STATE" | cat > "$OUT"; echo "\${PIPESTATUS[0]}"`;
  const started = performance.now();
  const { stdout } = await execFileAsync('bash', ['-c', script], {
    env: {
      ...process.env,
      NODE: process.execPath,
      CORRAL: join(ROOT, 'bin', 'corral.js'),
      STATE: stateDir,
      OUT: out,
    },
  });
  const ms = performance.now() - started;
  const text = await readFile(out, 'utf8');
  await rm(out);
  return {
    code: Number(stdout.trim()),
    lines: text.split('\n').length - 1,
    bytes: Buffer.byteLength(text),
    items: json ? (JSON.parse(text) as unknown[]).length : Number.NaN,
    ms,
  };
}

function heartbeatLine(label: string, run: Run): void {
  console.log(
    `  ${label.padEnd(30)} ${fmt(run.count / run.seconds).padStart(8)} /s   p50 ${fmt(percentile(run.latenciesMs, 50), 2).padStart(8)} ms` +
      `   p99 ${fmt(percentile(run.latenciesMs, 99), 2).padStart(8)} ms   errors ${run.errors}` +
      (run.firstError === undefined ? '' : ` (first: ${run.firstError})`),
  );
}

function verdict(name: string, value: string, goal: string, met: boolean): boolean {
  console.log(
    `  ${name.padEnd(34)} ${value.padStart(14)}   goal ${goal.padEnd(10)} ${met ? 'met' : 'NOT met'}`,
  );
  return met;
}

export async function run(args: string[]): Promise<void> {
  const total = arg(args, '--hosts', DEFAULT_HOSTS);
  const live = arg(args, '--live', DEFAULT_LIVE);
  const seconds = arg(args, '--seconds', DEFAULT_SECONDS);
  const scrapes = arg(args, '--scrapes', DEFAULT_SCRAPES);
  if (live > total) throw new Error('--live must not exceed --hosts');
  const dir = await mkdtemp(join(tmpdir(), 'corral-bench-fleet-'));
  let controller: ControllerProcess | undefined;
  try {
    await initControllerState({ stateDir: dir });
    const seedStarted = performance.now();
    await seedHosts(dir, total - live);
    const seedMs = performance.now() - seedStarted;
    console.log(
      `fleet60k: ${total} hosts (${total - live} written into the database in ${fmt(seedMs / 1000, 1)} s, ` +
        `${live} enrolled through the API and posting heartbeats); node ${process.version}, ${cpus().length} cores, ` +
        `load average ${loadavg()
          .map((l) => fmt(l, 2))
          .join(' ')}`,
    );
    const startAt = performance.now();
    controller = await startControllerProcess(dir, [
      '--no-heartbeat-budget',
      '--heartbeat-interval',
      `${LIVENESS_INTERVAL_S}s`,
    ]);
    const startMs = performance.now() - startAt;
    const pid = controller.child.pid ?? 0;
    const rssStarted = await processRssBytes(pid);
    const workers: SimulatedWorker[] = [];
    for (let i = 0; i < live; i++) {
      const e = await controller.admin<EnrollResponse>('POST', '/v1/enroll', {
        name: `live-${i}`,
        address: '127.0.0.1',
      });
      workers.push({
        material: { caPem: e.caPem, certPem: e.agent.certPem, keyPem: e.agent.keyPem },
        body: JSON.stringify(heartbeatRequest(e.hostId)),
      });
    }
    console.log('');
    console.log(
      `start-up (spawn to endpoints file)  ${fmt(startMs, 0)} ms    RSS after start ${fmt(mib(rssStarted))} MiB`,
    );

    const metricsMs: number[] = [];
    const cpuBeforeScrapes = await processCpuMs(pid);
    for (let i = 0; i < scrapes; i++) {
      const r = await timedGet(controller, '/metrics');
      if (r.status !== 200) throw new Error(`/metrics: ${r.status}`);
      metricsMs.push(r.ms);
    }
    console.log(
      `/metrics, ${scrapes} scrapes               median ${fmt(median(metricsMs), 1)} ms   max ${fmt(Math.max(...metricsMs), 1)} ms`,
    );
    const scrapeCpuMs = (await processCpuMs(pid)) - cpuBeforeScrapes;
    const perHost = await timedGet(controller, '/metrics/hosts');
    if (perHost.status !== 200) throw new Error(`/metrics/hosts: ${perHost.status}`);
    const exposition = (await timedGet(controller, '/metrics')).text;
    const omitted = /^corral_host_series_omitted_hosts (\d+)$/m.exec(exposition)?.[1];
    const series = (name: string): string =>
      exposition
        .split('\n')
        .filter((l) => l.startsWith(`${name}{`) && !l.endsWith(' 0'))
        .map((l) => l.slice(name.length))
        .join(' ');
    console.log(`/metrics counts: hosts ${series('corral_hosts')}; services ${series('corral_services')}`);
    console.log(
      `/metrics/hosts (the per-host gauges alone; /metrics omits them for ${omitted ?? '?'} hosts)  ` +
        `${fmt(perHost.ms, 0)} ms, ${fmt(perHost.text.length / 1e6, 1)} MB`,
    );
    const cpuBeforeWalk = await processCpuMs(pid);
    const walk = await walkList(controller);
    const walkCpuMs = (await processCpuMs(pid)) - cpuBeforeWalk;
    console.log(
      `host list, ${walk.paged ? `paged by ${PAGE_LIMIT}` : 'NOT paged (one answer)'}: ${walk.hosts} hosts in ${walk.pages} pages, ` +
        `${fmt(walk.bytes / 1e6, 1)} MB, ${fmt(walk.totalMs, 0)} ms in all; per page median ${fmt(median(walk.pageMs), 1)} ms, ` +
        `p99 ${fmt(percentile(walk.pageMs, 99), 1)} ms, max ${fmt(Math.max(...walk.pageMs), 1)} ms`,
    );
    console.log(
      `controller CPU (load-independent, 10 ms ticks): ${fmt(scrapeCpuMs / scrapes, 1)} ms per scrape, ` +
        `${fmt(walkCpuMs / walk.pages, 1)} ms per list page`,
    );
    for (const json of [false, true]) {
      const piped = await cliThroughPipe(dir, json);
      console.log(
        `corral controller hosts${json ? ' --json' : ''} | wc: ${piped.lines} lines, ${fmt(piped.bytes / 1e6, 1)} MB ` +
          `in ${fmt(piped.ms / 1000, 1)} s, exit ${piped.code}${json ? ` (JSON array of ${piped.items} hosts)` : ''}`,
      );
    }
    const rssAfterReads = await processRssBytes(pid);
    console.log(`RSS after one scrape series and one full list walk: ${fmt(mib(rssAfterReads))} MiB`);
    console.log('');

    const endpoint = controller.endpoints.worker ?? '';
    console.log(
      `heartbeats, ${live} workers in a closed loop on persistent connections, ${seconds} s each ` +
        `(the first after the connect storm, the second after ${HEARTBEAT_WARMUP_MS / 1000} s with the reads running):`,
    );
    const clients = heartbeatClients(endpoint, workers);
    const quiet = await driveHeartbeats(endpoint, workers, {
      seconds,
      warmup: 'auto',
      serverPid: pid,
      clients,
    });
    heartbeatLine('alone', quiet);
    console.log(`  (connect storm: ${live} workers answered once in ${fmt(quiet.stormMs / 1000, 1)} s)`);

    // Admin reads beside the heartbeats: one loop walking the whole list, one scraping.
    let reading = true;
    const readStats = { walks: 0, scrapes: 0, pageMs: [] as number[], scrapeMs: [] as number[] };
    const loaded = driveHeartbeats(endpoint, workers, {
      seconds,
      warmup: HEARTBEAT_WARMUP_MS,
      serverPid: pid,
      clients,
      onMeasuring: (phase) => {
        if (phase === 'end') reading = false;
      },
    });
    const readers = [
      (async () => {
        while (reading) {
          const w = await walkList(controller);
          readStats.walks++;
          readStats.pageMs.push(...w.pageMs);
        }
      })(),
      (async () => {
        while (reading) {
          const r = await timedGet(controller, '/metrics');
          readStats.scrapes++;
          readStats.scrapeMs.push(r.ms);
        }
      })(),
    ];
    const busy = await loaded;
    reading = false;
    await Promise.all(readers);
    heartbeatLine('with list walks and scrapes', busy);
    console.log(
      `  busy / alone: p50 ${fmt(percentile(busy.latenciesMs, 50) / percentile(quiet.latenciesMs, 50), 2)}×, ` +
        `p99 ${fmt(percentile(busy.latenciesMs, 99) / percentile(quiet.latenciesMs, 99), 2)}×, ` +
        `rate ${fmt(busy.count / busy.seconds / (quiet.count / quiet.seconds), 2)}×`,
    );
    await Promise.all(clients.map((c) => c.close()));
    console.log(
      `  admin reads meanwhile: ${readStats.walks} list walks (page median ${fmt(median(readStats.pageMs), 1)} ms, ` +
        `p99 ${fmt(percentile(readStats.pageMs, 99), 1)} ms), ${readStats.scrapes} scrapes (median ${fmt(median(readStats.scrapeMs), 1)} ms)`,
    );
    const rssEnd = await processRssBytes(pid);
    console.log(`RSS at the end: ${fmt(mib(rssEnd))} MiB`);
    console.log('');

    const p99Quiet = percentile(quiet.latenciesMs, 99);
    const p99Busy = percentile(busy.latenciesMs, 99);
    const ratio = p99Busy / p99Quiet;
    console.log(`goals (${total} hosts):`);
    const met = [
      verdict(
        '/metrics median',
        `${fmt(median(metricsMs), 1)} ms`,
        `< ${GOAL_METRICS_MS} ms`,
        median(metricsMs) < GOAL_METRICS_MS,
      ),
      verdict(
        'host list page, max',
        `${fmt(Math.max(...walk.pageMs), 1)} ms`,
        `< ${GOAL_PAGE_MS} ms`,
        walk.paged && Math.max(...walk.pageMs) < GOAL_PAGE_MS,
      ),
      verdict(
        'heartbeat p99 busy / alone',
        `${fmt(ratio, 2)}×`,
        `≤ ${GOAL_P99_RATIO}×`,
        ratio <= GOAL_P99_RATIO,
      ),
    ];
    console.log(`${met.filter(Boolean).length} of ${met.length} goals met`);
  } finally {
    const code = await controller?.stop();
    if (code !== undefined && code !== 0) console.log(`(controller exited ${code})`);
    await rm(dir, { recursive: true, force: true });
  }
}

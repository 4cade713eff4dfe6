import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { once } from 'node:events';
import { mkdtemp, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import { sql } from 'kysely';
import { describe, expect, it } from 'vitest';
import { DEFAULT_EVENT_RETENTION, DEFAULT_HEARTBEAT_BUDGET } from '../controller/index.js';
import { loadBundle } from '../pki/index.js';
import { MAX_WORKER_BODY_BYTES } from '../protocol/constants.js';
import { readEndpointsFile } from '../kit/endpoints-file.js';
import { ErrorCode } from '../protocol/errors.js';
import { MAX_HEARTBEAT_EVENTS, type HeartbeatRequest } from '../protocol/heartbeat.js';
import { addWorker } from './deploy-fixture.js';
import {
  agentMaterial,
  corral,
  heartbeatBody,
  postJson,
  startController,
  waitFor,
  workerClient,
} from './controller-fixture.js';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');

const FLOOD_MS = 4_000;
const CONNECTIONS = 4;
/** The flood goes on for FLOOD_MS and at least this many heartbeats (a slow machine sends fewer). */
const MIN_FLOOD_HEARTBEATS = 40;
const MAX_FLOOD_MS = 60_000;
/**
 * The most the database file may grow (measured after a WAL checkpoint, so the WAL's pages are
 * in it) from one host's flood: the 1 MiB burst and 64 KiB/s of event-laden heartbeats the
 * budget lets in, of which retention keeps the newest 1000 events (1.2 KiB each here) plus one
 * batch before it prunes. (Before the budget and retention: about 66 MB in 4 s.)
 */
const MAX_GROWTH_BYTES = 4 * 1024 * 1024;

/** Heartbeats as large as the worker API takes: the most events, each detail as long as fits. */
function floodBodies(hostId: string): () => string {
  const make = (detailLength: number): HeartbeatRequest =>
    heartbeatBody(hostId, {
      events: Array.from({ length: MAX_HEARTBEAT_EVENTS }, () => ({
        id: randomUUID(),
        type: 'service-failed' as const,
        time: new Date().toISOString(),
        service: 'api',
        detail: 'x'.repeat(detailLength),
      })),
    });
  let detail = 2048;
  while (Buffer.byteLength(JSON.stringify(make(detail))) > MAX_WORKER_BODY_BYTES - 512) detail -= 16;
  return () => JSON.stringify(make(detail));
}

const fileBytes = async (path: string): Promise<number> => (await stat(path).catch(() => ({ size: 0 }))).size;

function metric(text: string, sample: string): number {
  const line = text.split('\n').find((l) => l.startsWith(`${sample} `));
  return line === undefined ? Number.NaN : Number(line.slice(sample.length + 1));
}

describe('a pinned worker flooding the heartbeat route', () => {
  it('is held to its budget: 429 with Retry-After, counted in /metrics, and the database barely grows', async () => {
    await using t = await startController({ heartbeatIntervalMs: 30_000 });
    const enrolled = await t.enroll('flood-1');
    const dbPath = t.identity.paths.database;
    // SQLite: the file after a WAL checkpoint. PostgreSQL: the database's relation files.
    const checkpoint = async (): Promise<void> => {
      if (t.databaseUrl === undefined) await sql`PRAGMA wal_checkpoint(TRUNCATE)`.execute(t.db);
    };
    const databaseBytes = async (): Promise<number> => {
      if (t.databaseUrl === undefined) return fileBytes(dbPath);
      const { rows } = await sql<{ n: string }>`SELECT pg_database_size(current_database()) AS n`.execute(
        t.db,
      );
      return Number(rows[0]?.n);
    };
    await checkpoint();
    const before = await databaseBytes();
    const clients = Array.from({ length: CONNECTIONS }, () =>
      workerClient(t.endpoints.worker, agentMaterial(enrolled)),
    );
    let accepted = 0;
    let limited = 0;
    let offeredBytes = 0;
    let connectionErrors = 0;
    const retryAfter = new Set<string>();
    const codes = new Set<string>();
    const nextBody = floodBodies(enrolled.hostId);
    const started = Date.now();
    const going = (): boolean => {
      const elapsed = Date.now() - started;
      return elapsed < MAX_FLOOD_MS && (elapsed < FLOOD_MS || accepted + limited < MIN_FLOOD_HEARTBEATS);
    };
    try {
      await Promise.all(
        clients.map(async (client) => {
          while (going()) {
            const body = nextBody();
            offeredBytes += Buffer.byteLength(body);
            try {
              const res = await client.request({
                method: 'POST',
                path: '/v1/heartbeat',
                headers: { 'content-type': 'application/json' },
                body,
              });
              const text = await res.body.text();
              if (res.statusCode === 200) accepted++;
              else if (res.statusCode === 429) {
                limited++;
                retryAfter.add(String(res.headers['retry-after']));
                codes.add((JSON.parse(text) as { error: { code: string } }).error.code);
              } else throw new Error(`unexpected ${res.statusCode}: ${text}`);
            } catch (e: unknown) {
              if (e instanceof Error && e.message.startsWith('unexpected')) throw e;
              connectionErrors++; // a connection closed under the flood: the worker just dials again
            }
          }
        }),
      );
    } finally {
      await Promise.all(clients.map((c) => c.destroy()));
    }
    const elapsedMs = Date.now() - started;
    // Every accepted heartbeat was committed before it was answered.
    const walBytes = await fileBytes(`${dbPath}-wal`);
    await checkpoint();
    const growth = (await databaseBytes()) - before;
    const stored = await t.db
      .selectFrom('events')
      .select((eb) => eb.fn.countAll<number>().as('n'))
      .where('host_id', '=', enrolled.hostId)
      .executeTakeFirstOrThrow();
    const metrics = (await t.admin<string>('GET', '/metrics')).body;
    console.log(
      `flood ${elapsedMs} ms over ${CONNECTIONS} connections: offered ${(offeredBytes / 1e6).toFixed(1)} MB ` +
        `in ${accepted + limited} heartbeats; accepted ${accepted}, 429 ${limited}, connection errors ` +
        `${connectionErrors}; events stored ${Number(stored.n)}; WAL at the end ${(walBytes / 1024).toFixed(0)} KiB; ` +
        `database file grew ${(growth / 1024).toFixed(0)} KiB`,
    );

    expect(limited).toBeGreaterThan(0);
    expect([...codes]).toEqual([ErrorCode.RATE_LIMITED]);
    for (const value of retryAfter) expect(value).toMatch(/^[1-9]\d*$/);
    // The burst and what trickles in at the sustained rate, never more.
    const admittedBytesMax =
      DEFAULT_HEARTBEAT_BUDGET.burstBytes +
      ((elapsedMs + 1_000) / 1000) * DEFAULT_HEARTBEAT_BUDGET.bytesPerSecond;
    expect(accepted).toBeLessThanOrEqual(Math.ceil(admittedBytesMax / (MAX_WORKER_BODY_BYTES - 512 - 4096)));
    expect(Number(stored.n)).toBeLessThanOrEqual(DEFAULT_EVENT_RETENTION.maxPerHost);
    expect(growth).toBeLessThanOrEqual(MAX_GROWTH_BYTES);
    expect(metric(metrics, 'corral_heartbeats_rejected_total{reason="rate-limited"}')).toBe(limited);
    expect(metric(metrics, 'corral_heartbeats_accepted_total')).toBe(accepted);
    expect(metric(metrics, 'corral_heartbeat_throttled_bytes_total')).toBeGreaterThan(0);

    // The host is not shut out: once the budget refills, an ordinary heartbeat is accepted.
    await sleep(1_500);
    await using client = workerClient(t.endpoints.worker, agentMaterial(enrolled));
    const res = await client.request({
      method: 'POST',
      path: '/v1/heartbeat',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(heartbeatBody(enrolled.hostId)),
    });
    await res.body.text();
    expect(res.statusCode).toBe(200);
  });

  it('the real agent waits as long as a 429 asks instead of retrying at once', async () => {
    // One heartbeat a second per host; the agent is set to beat about every 100 ms.
    await using t = await startController({
      heartbeatIntervalMs: 30_000,
      heartbeatBudget: {
        perSecond: 1,
        burst: 2,
        bytesPerSecond: 64 * 1024,
        burstBytes: MAX_WORKER_BODY_BYTES,
      },
    });
    const worker = await addWorker(t, 'eager-1');
    try {
      const read = async () => {
        const text = (await t.admin<string>('GET', '/metrics')).body;
        return {
          accepted: metric(text, 'corral_heartbeats_accepted_total'),
          limited: metric(text, 'corral_heartbeats_rejected_total{reason="rate-limited"}'),
        };
      };
      // Let the burst go and the agent meet its first 429.
      for (let i = 0; i < 200 && (await read()).limited === 0; i++) await sleep(50);
      const start = await read();
      expect(start.limited).toBeGreaterThan(0);
      await sleep(FLOOD_MS);
      const end = await read();
      const accepted = end.accepted - start.accepted;
      const limited = end.limited - start.limited;
      console.log(`agent over ${FLOOD_MS} ms at 1 heartbeat/s: accepted ${accepted}, 429 ${limited}`);
      // Retrying at its own backoff (20–200 ms) it would meet dozens of 429s; waiting out each
      // Retry-After (1 s) it meets about one per accepted heartbeat.
      expect(accepted).toBeGreaterThan(0);
      expect(limited).toBeLessThanOrEqual(accepted + 2);
      const host = await t.admin<{ host: { status: string } }>('GET', '/v1/hosts/eager-1');
      expect(host.body.host.status).toBe('online');
    } finally {
      await worker.destroy();
    }
  });

  it('corral controller serve takes the budget from its flags, and refuses unusable ones (exit 2)', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'corral-budget-'));
    const state = join(dir, 'controller');
    try {
      expect((await corral(['controller', 'init', '--state-dir', state])).code).toBe(0);
      const bad = [
        ['--heartbeat-rate', '0'],
        ['--heartbeat-rate', 'fast'],
        ['--heartbeat-bytes', '12QB'],
        ['--events-per-host', '1.5'],
        ['--event-max-age', 'soon'],
      ];
      const refused = await Promise.all(
        bad.map((flag) =>
          corral(['controller', 'serve', '--state-dir', state, '--worker-listen', '127.0.0.1:0', ...flag]),
        ),
      );
      refused.forEach((r, i) => {
        const flag = bad[i]?.[0] ?? '';
        expect([flag, r.code]).toEqual([flag, 2]);
        expect(r.stderr).toContain(flag);
      });
      const child = spawn(
        process.execPath,
        [
          join(ROOT, 'bin', 'corral.js'),
          'controller',
          'serve',
          '--state-dir',
          state,
          '--admin-listen',
          '127.0.0.1:0',
          '--worker-listen',
          '127.0.0.1:0',
          '--heartbeat-rate',
          '1',
          '--log-level',
          'warn',
        ],
        { stdio: ['ignore', 'ignore', 'inherit'] },
      );
      const exited = once(child, 'exit');
      try {
        let endpoints: Record<string, string> | undefined;
        await waitFor(async () => {
          endpoints = await readEndpointsFile(state).catch(() => undefined);
          return endpoints !== undefined;
        }, 30_000);
        const out = join(dir, 'bundle');
        const enrolled = JSON.parse(
          (
            await corral([
              'controller',
              'enroll',
              '--state-dir',
              state,
              '--name',
              'w-1',
              '--address',
              '127.0.0.1',
              '--out-dir',
              out,
              '--json',
            ])
          ).stdout,
        ) as { hostId: string };
        const bundle = await loadBundle(out);
        await using client = workerClient(endpoints!.worker!, {
          caPem: bundle.caPem,
          certPem: bundle.identities.agent!.certPem,
          keyPem: bundle.identities.agent!.keyPem,
        });
        // `--heartbeat-rate 1`: a burst of five, then one a second.
        const statuses: number[] = [];
        for (let i = 0; i < 20 && !statuses.includes(429); i++) {
          statuses.push((await postJson(client, '/v1/heartbeat', heartbeatBody(enrolled.hostId))).status);
        }
        expect(statuses.slice(0, 5)).toEqual([200, 200, 200, 200, 200]);
        expect(statuses.at(-1)).toBe(429);
      } finally {
        child.kill('SIGTERM');
        await exited;
      }
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  }, 180_000);
});

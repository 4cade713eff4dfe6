import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { Agent, request } from 'undici';
import { joinFleet } from '../agent/join.js';
import { initControllerState } from '../controller/index.js';
import { createCsr } from '../pki/index.js';
import { parseHostPort } from '../kit/host-port.js';
import type { TokenCreateResponse } from '../protocol/enrollment.js';
import { startControllerProcess } from './lib/controller-process.js';
import { fmt, percentile } from './lib/stats.js';

/**
 * `npm run bench -- enroll [--joins N] [--concurrency C]`: join enrollments per second
 * through the worker-facing join listener of a real `corral controller serve` (child
 * process): token claim, two CSR checks and signatures, host + pins + audit in one
 * transaction. Measured twice: with CSRs made beforehand (the controller's rate), and end to
 * end with `joinFleet` (CA-pin bootstrap, keys and CSRs made per join, bundle written).
 */
const DEFAULT_JOINS = 300;
const DEFAULT_CONCURRENCY = 8;
const END_TO_END_JOINS = 60;

function arg(args: string[], name: string, fallback: number): number {
  const i = args.indexOf(name);
  const v = i >= 0 ? Number(args[i + 1]) : fallback;
  if (!Number.isInteger(v) || v <= 0) throw new Error(`${name} must be a positive integer`);
  return v;
}

async function pool<T>(
  items: readonly T[],
  concurrency: number,
  fn: (item: T) => Promise<void>,
): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      for (let i = next++; i < items.length; i = next++) await fn(items[i]!);
    }),
  );
}

export async function run(args: string[]): Promise<void> {
  const joins = arg(args, '--joins', DEFAULT_JOINS);
  const concurrency = arg(args, '--concurrency', DEFAULT_CONCURRENCY);
  const dir = await mkdtemp(join(tmpdir(), 'corral-bench-enroll-'));
  try {
    await initControllerState({ stateDir: dir });
    const controller = await startControllerProcess(dir);
    try {
      const joinAddress = controller.endpoints.join ?? '';
      const tokens: TokenCreateResponse[] = [];
      for (let i = 0; i < joins + END_TO_END_JOINS; i++) {
        tokens.push(await controller.admin<TokenCreateResponse>('POST', '/v1/tokens', { name: `j-${i}` }));
      }
      const prepared = await Promise.all(
        tokens.slice(0, joins).map(async (t) => {
          const [agent, updater] = await Promise.all([createCsr('a'), createCsr('u')]);
          return JSON.stringify({
            token: t.token,
            address: '127.0.0.1',
            agentCsrPem: agent.csrPem,
            updaterCsrPem: updater.csrPem,
          });
        }),
      );
      const { host, port } = parseHostPort(joinAddress);
      const caPem = await readFile(join(dir, 'ca', 'ca.crt'), 'utf8');
      const tls = new Agent({
        connect: { ca: caPem, servername: 'localhost', rejectUnauthorized: true },
        connections: concurrency,
      });
      const latencies: number[] = [];
      let failures = 0;
      const started = performance.now();
      await pool(prepared, concurrency, async (body) => {
        const t0 = performance.now();
        const res = await request(`https://${host}:${port}/v1/join`, {
          method: 'POST',
          dispatcher: tls,
          headers: { 'content-type': 'application/json' },
          body,
        });
        await res.body.dump();
        if (res.statusCode === 200) latencies.push(performance.now() - t0);
        else failures++;
      });
      const seconds = (performance.now() - started) / 1000;
      await tls.close();

      const e2e: number[] = [];
      const e2eStarted = performance.now();
      await pool(tokens.slice(joins), Math.min(concurrency, 4), async (t) => {
        const t0 = performance.now();
        await joinFleet({
          controller: t.controller,
          token: t.token,
          caPin: t.caPin,
          stateDir: join(dir, 'workers', t.view.name),
        });
        e2e.push(performance.now() - t0);
      });
      const e2eSeconds = (performance.now() - e2eStarted) / 1000;

      console.log(
        `enroll: joins through the join listener of a real controller; node ${process.version}, ${cpus().length} cores`,
      );
      console.log('');
      console.log(
        `controller, CSRs made beforehand  ${fmt(latencies.length / seconds).padStart(7)} joins/s   ` +
          `p50 ${fmt(percentile(latencies, 50), 1)} ms   p99 ${fmt(percentile(latencies, 99), 1)} ms   ` +
          `(${latencies.length} joins, concurrency ${concurrency}, failures ${failures})`,
      );
      console.log(
        `end to end (agent join)           ${fmt(e2e.length / e2eSeconds).padStart(7)} joins/s   ` +
          `p50 ${fmt(percentile(e2e, 50), 1)} ms   p99 ${fmt(percentile(e2e, 99), 1)} ms   ` +
          `(${e2e.length} joins, concurrency ${Math.min(concurrency, 4)}, keys + CSRs + bundle per join)`,
      );
    } finally {
      await controller.stop();
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

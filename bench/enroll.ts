import { createPrivateKey, createPublicKey } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import * as x509 from '@peculiar/x509';
import { Agent, request } from 'undici';
import { joinFleet } from '../agent/link/join.js';
import { initControllerState } from '../controller/index.js';
import { createCa, createCsr, signCsr, type LeafProfile } from '../pki/index.js';
import { parseHostPort } from '../kit/host-port.js';
import type { TokenCreateResponse } from '../protocol/enrollment.js';
import { importPair, referenceSignCsr } from '../test/peculiar-reference.js';
import { startControllerProcess } from './lib/controller-process.js';
import { processCpuMs } from './lib/heartbeat-load.js';
import { fmt, median, percentile } from './lib/stats.js';

/**
 * `npm run bench -- enroll [--joins N] [--concurrency C] [--signs S] [--cpu-prof DIR]`: join
 * enrollments per second through the worker-facing join listener of a real
 * `corral controller serve` (child process): token claim, two CSR checks and signatures,
 * host + pins + audit in one transaction. Measured twice: with CSRs made beforehand (the
 * controller's rate, and its CPU per join), and end to end with `joinFleet` (CA-pin
 * bootstrap, keys and CSRs made per join, bundle written). Beside them, in this process and
 * the same run, what signing a join's two CSRs costs with the native signer the controller
 * uses and with the @peculiar/x509 path it replaced (test/peculiar-reference.ts), S joins each,
 * alternating. `--cpu-prof DIR` writes the controller's CPU profile there.
 */
const DEFAULT_JOINS = 300;
const DEFAULT_CONCURRENCY = 8;
const DEFAULT_SIGNS = 200;
const END_TO_END_JOINS = 60;
/** Goal (issue 13): joins through the API with CSRs made beforehand. */
const GOAL_JOINS_PER_S = 200;
/** Joins per round of the signer comparison: the two signers alternate round by round. */
const SIGN_ROUND = 20;

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

interface SignerCost {
  /** CPU of this process per join (two CSRs verified and signed), ms: median over rounds. */
  readonly cpuMsPerJoin: number;
  readonly wallMsPerJoin: number;
}

/**
 * Both signers on the same CA and the same prepared CSRs, in rounds of SIGN_ROUND joins
 * that alternate between them, so load from other processes falls on both alike.
 */
async function compareSigners(joins: number): Promise<{ native: SignerCost; peculiar: SignerCost }> {
  const ca = await createCa();
  const caKey = createPrivateKey(ca.keyPem);
  const refKeys = await importPair(caKey, createPublicKey(caKey));
  const reference = { cert: new x509.X509Certificate(ca.certPem), key: refKeys.privateKey };
  const csrs = await Promise.all(Array.from({ length: SIGN_ROUND * 2 }, () => createCsr('w')));
  const profile: LeafProfile = {
    role: 'agent',
    hostId: 'h-0123456789abcdef',
    commonName: 'worker-agent',
    ipAddresses: ['10.1.2.3'],
  };
  const fixed = {
    serialHex: '0102030405060708090a0b0c0d0e0f10',
    notBefore: new Date(),
    notAfter: new Date(),
  };
  const signers = {
    native: (pem: string) => signCsr(ca, pem, profile),
    peculiar: (pem: string) => referenceSignCsr(reference, pem, { ...profile, ...fixed }),
  };
  const samples = {
    native: { cpu: [] as number[], wall: [] as number[] },
    peculiar: { cpu: [] as number[], wall: [] as number[] },
  };
  for (let done = 0; done < joins; done += SIGN_ROUND) {
    for (const name of ['native', 'peculiar'] as const) {
      const cpu0 = process.cpuUsage();
      const t0 = performance.now();
      for (let i = 0; i < SIGN_ROUND; i++) {
        await Promise.all([signers[name](csrs[2 * i]!.csrPem), signers[name](csrs[2 * i + 1]!.csrPem)]);
      }
      const cpu = process.cpuUsage(cpu0);
      samples[name].cpu.push((cpu.user + cpu.system) / 1000 / SIGN_ROUND);
      samples[name].wall.push((performance.now() - t0) / SIGN_ROUND);
    }
  }
  const cost = (s: { cpu: number[]; wall: number[] }): SignerCost => ({
    cpuMsPerJoin: median(s.cpu),
    wallMsPerJoin: median(s.wall),
  });
  return { native: cost(samples.native), peculiar: cost(samples.peculiar) };
}

export async function run(args: string[]): Promise<void> {
  const joins = arg(args, '--joins', DEFAULT_JOINS);
  const concurrency = arg(args, '--concurrency', DEFAULT_CONCURRENCY);
  const signs = arg(args, '--signs', DEFAULT_SIGNS);
  const profIndex = args.indexOf('--cpu-prof');
  const profDir = profIndex >= 0 ? args[profIndex + 1] : undefined;
  const dir = await mkdtemp(join(tmpdir(), 'corral-bench-enroll-'));
  try {
    await initControllerState({ stateDir: dir });
    const controller = await startControllerProcess(
      dir,
      [],
      profDir !== undefined ? ['--cpu-prof', '--cpu-prof-dir', profDir] : [],
    );
    const pid = controller.child.pid ?? 0;
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
      const cpuBefore = await processCpuMs(pid);
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
      const cpuPerJoin = ((await processCpuMs(pid)) - cpuBefore) / Math.max(1, latencies.length);
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
      const signers = await compareSigners(signs);
      const rate = latencies.length / seconds;

      console.log(
        `enroll: joins through the join listener of a real controller; node ${process.version}, ` +
          `${cpus().length} cores, load ${loadavg()
            .map((l) => fmt(l, 2))
            .join(' ')}`,
      );
      console.log('');
      console.log(
        `controller, CSRs made beforehand  ${fmt(rate).padStart(7)} joins/s   ` +
          `p50 ${fmt(percentile(latencies, 50), 1)} ms   p99 ${fmt(percentile(latencies, 99), 1)} ms   ` +
          `controller CPU ${fmt(cpuPerJoin, 2)} ms/join   ` +
          `(${latencies.length} joins, concurrency ${concurrency}, failures ${failures})`,
      );
      console.log(
        `end to end (agent join)           ${fmt(e2e.length / e2eSeconds).padStart(7)} joins/s   ` +
          `p50 ${fmt(percentile(e2e, 50), 1)} ms   p99 ${fmt(percentile(e2e, 99), 1)} ms   ` +
          `(${e2e.length} joins, concurrency ${Math.min(concurrency, 4)}, keys + CSRs + bundle per join)`,
      );
      console.log('');
      console.log(
        `signing a join's two CSRs (verify + issue), this process, ${signs} joins each, median of rounds:`,
      );
      for (const [name, label] of [
        ['native', 'native (DER template + node:crypto)'],
        ['peculiar', '@peculiar/x509 (the path replaced)'],
      ] as const) {
        const c = signers[name];
        console.log(
          `  ${label.padEnd(38)} CPU ${fmt(c.cpuMsPerJoin, 2).padStart(6)} ms/join   ` +
            `wall ${fmt(c.wallMsPerJoin, 2).padStart(6)} ms/join   (signing alone: at most ${fmt(1000 / c.cpuMsPerJoin, 0)} joins/s per core)`,
        );
      }
      console.log('');
      console.log(
        `goal: >= ${GOAL_JOINS_PER_S} joins/s with CSRs made beforehand: ${fmt(rate)} joins/s ` +
          `${rate >= GOAL_JOINS_PER_S ? 'met' : 'NOT met'}`,
      );
    } finally {
      await controller.stop();
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

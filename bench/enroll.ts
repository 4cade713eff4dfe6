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
import { ROOT, startControllerProcess, type ControllerProcess } from './lib/controller-process.js';
import { processCpuMs } from './lib/heartbeat-load.js';
import { fmt, median, percentile } from './lib/stats.js';

/**
 * `npm run bench -- enroll [--joins N] [--rounds R] [--concurrency C] [--end-to-end E]
 * [--signs S] [--cpu-prof DIR]`: join enrollments per second through the worker-facing join
 * listener of a real `corral controller serve` (child process): token claim, two CSR checks
 * and signatures, host + pins + audit in one transaction.
 *
 * Two controllers run side by side: one as shipped (native issuer: DER template signed with
 * node:crypto) and one started with bench/lib/old-issuer-register.js, which makes its pki
 * sign CSRs the way it did before issue 13 (@peculiar/x509). With CSRs made beforehand, each
 * gets R rounds of N joins, the two alternating round by round so load from other processes
 * falls on both alike; per round the rate and the controller's CPU per join (all its threads,
 * from /proc), medians reported. Then E joins end to end with `joinFleet` against the native
 * one (CA-pin bootstrap, keys and CSRs made per join, bundle written), and, in this process,
 * what signing a join's two CSRs costs with each signer alone, S joins each.
 * `--cpu-prof DIR` writes each controller's CPU profile to DIR/<issuer>.
 */
const DEFAULT_JOINS = 200;
const DEFAULT_ROUNDS = 5;
const DEFAULT_CONCURRENCY = 8;
const DEFAULT_SIGNS = 200;
const DEFAULT_END_TO_END_JOINS = 60;
/** Joins per controller before the measured rounds (JIT, statement cache, connections). */
const WARMUP_JOINS = 40;
/** Goal (issue 13): joins through the API with CSRs made beforehand. */
const GOAL_JOINS_PER_S = 200;
/** Joins per round of the in-process signer comparison: the two signers alternate round by round. */
const SIGN_ROUND = 20;

const ISSUERS = ['native', 'peculiar'] as const;
type IssuerName = (typeof ISSUERS)[number];
const LABELS: Record<IssuerName, string> = {
  native: 'native (DER template + node:crypto)',
  peculiar: '@peculiar/x509 (the path replaced)',
};

function arg(args: string[], name: string, fallback: number, min = 1): number {
  const i = args.indexOf(name);
  const v = i >= 0 ? Number(args[i + 1]) : fallback;
  if (!Number.isInteger(v) || v < min) throw new Error(`${name} must be an integer >= ${min}`);
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
async function compareSigners(joins: number): Promise<Record<IssuerName, SignerCost>> {
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
    for (const name of ISSUERS) {
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

/** One controller under test, with its prepared join bodies. */
interface Side {
  readonly name: IssuerName;
  readonly controller: ControllerProcess;
  readonly pid: number;
  readonly url: string;
  readonly tls: Agent;
  /** Join bodies (token + two CSRs made beforehand), used up round by round. */
  readonly bodies: string[];
  readonly rates: number[];
  readonly cpuPerJoin: number[];
  readonly latencies: number[];
  failures: number;
}

async function startSide(
  name: IssuerName,
  dir: string,
  joins: number,
  concurrency: number,
  profDir: string | undefined,
): Promise<Side> {
  await initControllerState({ stateDir: dir });
  const nodeArgs = [
    ...(name === 'peculiar'
      ? ['--import', join(ROOT, 'dist', 'bench', 'lib', 'old-issuer-register.js')]
      : []),
    ...(profDir !== undefined ? ['--cpu-prof', '--cpu-prof-dir', join(profDir, name)] : []),
  ];
  const controller = await startControllerProcess(dir, [], nodeArgs);
  const tokens: TokenCreateResponse[] = [];
  for (let i = 0; i < joins; i++) {
    tokens.push(await controller.admin<TokenCreateResponse>('POST', '/v1/tokens', { name: `j-${i}` }));
  }
  const bodies = await Promise.all(
    tokens.map(async (t) => {
      const [agent, updater] = await Promise.all([createCsr('a'), createCsr('u')]);
      return JSON.stringify({
        token: t.token,
        address: '127.0.0.1',
        agentCsrPem: agent.csrPem,
        updaterCsrPem: updater.csrPem,
      });
    }),
  );
  const { host, port } = parseHostPort(controller.endpoints.join ?? '');
  const caPem = await readFile(join(dir, 'ca', 'ca.crt'), 'utf8');
  return {
    name,
    controller,
    pid: controller.child.pid ?? 0,
    url: `https://${host}:${port}/v1/join`,
    tls: new Agent({
      connect: { ca: caPem, servername: 'localhost', rejectUnauthorized: true },
      connections: concurrency,
    }),
    bodies,
    rates: [],
    cpuPerJoin: [],
    latencies: [],
    failures: 0,
  };
}

/** Runs `count` joins against `side`; with `record`, adds the round's rate, CPU and latencies. */
async function joinRound(side: Side, count: number, concurrency: number, record: boolean): Promise<void> {
  const bodies = side.bodies.splice(0, count);
  const latencies: number[] = [];
  let failures = 0;
  const cpuBefore = await processCpuMs(side.pid);
  const started = performance.now();
  await pool(bodies, concurrency, async (body) => {
    const t0 = performance.now();
    const res = await request(side.url, {
      method: 'POST',
      dispatcher: side.tls,
      headers: { 'content-type': 'application/json' },
      body,
    });
    await res.body.dump();
    if (res.statusCode === 200) latencies.push(performance.now() - t0);
    else failures++;
  });
  const seconds = (performance.now() - started) / 1000;
  const cpu = (await processCpuMs(side.pid)) - cpuBefore;
  if (!record) return;
  side.rates.push(latencies.length / seconds);
  side.cpuPerJoin.push(cpu / Math.max(1, latencies.length));
  side.latencies.push(...latencies);
  side.failures += failures;
}

export async function run(args: string[]): Promise<void> {
  const joins = arg(args, '--joins', DEFAULT_JOINS);
  const rounds = arg(args, '--rounds', DEFAULT_ROUNDS);
  const concurrency = arg(args, '--concurrency', DEFAULT_CONCURRENCY);
  const signs = arg(args, '--signs', DEFAULT_SIGNS);
  const endToEnd = arg(args, '--end-to-end', DEFAULT_END_TO_END_JOINS, 0);
  const profIndex = args.indexOf('--cpu-prof');
  const profDir = profIndex >= 0 ? args[profIndex + 1] : undefined;
  const dir = await mkdtemp(join(tmpdir(), 'corral-bench-enroll-'));
  const sides: Side[] = [];
  try {
    for (const name of ISSUERS) {
      sides.push(await startSide(name, join(dir, name), WARMUP_JOINS + rounds * joins, concurrency, profDir));
    }
    for (const side of sides) await joinRound(side, WARMUP_JOINS, concurrency, false);
    for (let r = 0; r < rounds; r++) {
      // Alternate which side goes first, so neither always follows the other's tail.
      const order = r % 2 === 0 ? sides : [...sides].reverse();
      for (const side of order) await joinRound(side, joins, concurrency, true);
    }

    const native = sides.find((s) => s.name === 'native');
    const e2e: number[] = [];
    let e2eSeconds = Number.NaN;
    if (native && endToEnd > 0) {
      const tokens: TokenCreateResponse[] = [];
      for (let i = 0; i < endToEnd; i++) {
        tokens.push(
          await native.controller.admin<TokenCreateResponse>('POST', '/v1/tokens', { name: `e-${i}` }),
        );
      }
      const e2eStarted = performance.now();
      await pool(tokens, Math.min(concurrency, 4), async (t) => {
        const t0 = performance.now();
        await joinFleet({
          controller: t.controller,
          token: t.token,
          caPin: t.caPin,
          stateDir: join(dir, 'workers', t.view.name),
        });
        e2e.push(performance.now() - t0);
      });
      e2eSeconds = (performance.now() - e2eStarted) / 1000;
    }
    const signers = await compareSigners(signs);

    console.log(
      `enroll: joins through the join listener of a real controller; node ${process.version}, ` +
        `${cpus().length} cores, load ${loadavg()
          .map((l) => fmt(l, 2))
          .join(' ')}`,
    );
    console.log('');
    console.log(
      `controller, CSRs made beforehand: ${rounds} rounds of ${joins} joins per issuer, alternating, ` +
        `concurrency ${concurrency}; medians over rounds (min..max):`,
    );
    for (const side of sides) {
      console.log(
        `  ${LABELS[side.name].padEnd(38)} ${fmt(median(side.rates)).padStart(7)} joins/s ` +
          `(${fmt(Math.min(...side.rates))}..${fmt(Math.max(...side.rates))})   ` +
          `controller CPU ${fmt(median(side.cpuPerJoin), 2)} ms/join ` +
          `(${fmt(Math.min(...side.cpuPerJoin), 2)}..${fmt(Math.max(...side.cpuPerJoin), 2)})   ` +
          `p50 ${fmt(percentile(side.latencies, 50), 1)} ms   p99 ${fmt(percentile(side.latencies, 99), 1)} ms   ` +
          `failures ${side.failures}`,
      );
    }
    if (endToEnd > 0) {
      console.log(
        `end to end (agent join), native     ${fmt(e2e.length / e2eSeconds).padStart(7)} joins/s   ` +
          `p50 ${fmt(percentile(e2e, 50), 1)} ms   p99 ${fmt(percentile(e2e, 99), 1)} ms   ` +
          `(${e2e.length} joins, concurrency ${Math.min(concurrency, 4)}, keys + CSRs + bundle per join)`,
      );
    }
    console.log('');
    console.log(
      `signing a join's two CSRs (verify + issue), this process, ${signs} joins each, median of rounds:`,
    );
    for (const name of ISSUERS) {
      const c = signers[name];
      console.log(
        `  ${LABELS[name].padEnd(38)} CPU ${fmt(c.cpuMsPerJoin, 2).padStart(6)} ms/join   ` +
          `wall ${fmt(c.wallMsPerJoin, 2).padStart(6)} ms/join   (signing alone: at most ${fmt(1000 / c.cpuMsPerJoin, 0)} joins/s per core)`,
      );
    }
    console.log('');
    const rate = native ? median(native.rates) : Number.NaN;
    const cpu = native ? median(native.cpuPerJoin) : Number.NaN;
    console.log(
      `goal: >= ${GOAL_JOINS_PER_S} joins/s with CSRs made beforehand: ${fmt(rate)} joins/s (median) ` +
        `${rate >= GOAL_JOINS_PER_S ? 'met' : 'NOT met'}; at ${fmt(cpu, 2)} ms of controller CPU per join, ` +
        `${cpus().length} idle cores would allow at most ${fmt((cpus().length * 1000) / cpu, 0)} joins/s`,
    );
  } finally {
    for (const side of sides) {
      await side.tls.close();
      await side.controller.stop();
    }
    await rm(dir, { recursive: true, force: true });
  }
}

import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { cpus, loadavg, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';
import { Agent as Dispatcher, request } from 'undici';
import { AGENT_NODE_FLAGS } from '../agent/node-flags.js';
import { buildCorralRelease } from '../cli/release-build.js';
import { clientTlsOptions, createCa, writeBundle, type TlsMaterial } from '../pki/index.js';
import type { AgentStatus } from '../protocol/agent-api.js';
import { readEndpointsFile } from '../kit/endpoints-file.js';
import { fmt, median } from './lib/stats.js';

/**
 * `npm run bench -- agent [--services N] [--rounds R] [--flags "F ..."]`: the agent's resident
 * memory (VmRSS) as its own process, started as the updater starts it (with AGENT_NODE_FLAGS),
 * in two builds: the release `corral release build` packs (what workers run: the CLI bundled
 * and split at its lazy imports) and the tsc build the tests run; idle and while it supervises N small services (`sleep`), beside peers
 * measured the same way in the same run: bare node, a bare node:https mTLS server and a bare
 * fastify mTLS server (same certificates), each with node's defaults and with the agent's
 * flags, and the agent with node's defaults. Idle is measured after one mTLS request and a
 * settle; every figure is the median over R rounds (processes started afresh each round). Also
 * the time from one POST /v1/apply of N services until /v1/status shows all running.
 * `--flags` replaces the agent's flags for this run (to try others).
 */
const execFileAsync = promisify(execFile);
const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const SETTLE_MS = 3_000;
const SAMPLES = 3;
const SAMPLE_GAP_MS = 500;
/** Goals (issue 13). */
const GOAL_IDLE_MB = 60;
const GOAL_LOADED_MB = 100;

async function rssBytes(pid: number): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8');
  const kb = /VmRSS:\s+(\d+) kB/.exec(status)?.[1];
  return Number(kb ?? 0) * 1024;
}

/** Median of a few RSS samples, after the settle. */
async function settledRss(pid: number): Promise<number> {
  await sleep(SETTLE_MS);
  const samples: number[] = [];
  for (let i = 0; i < SAMPLES; i++) {
    samples.push(await rssBytes(pid));
    await sleep(SAMPLE_GAP_MS);
  }
  return median(samples);
}

async function until<T>(
  what: string,
  fn: () => Promise<T | undefined>,
  timeoutMs: number,
  pollMs = 20,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn().catch(() => undefined);
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out: ${what}`);
    await sleep(pollMs);
  }
}

function option(args: string[], name: string, fallback: number): number {
  const i = args.indexOf(name);
  const v = i >= 0 ? Number(args[i + 1]) : fallback;
  return Number.isInteger(v) && v > 0 ? v : fallback;
}

const mib = (b: number): string => fmt(b / 1024 / 1024, 1);

/** Peers: each prints its port on stdout once listening (bare node prints 0). */
const BARE_NODE = `setInterval(() => {}, 1 << 30); process.stdout.write('0\\n');`;
const TLS_FILES = `const fs = require('node:fs');
const tls = { ca: fs.readFileSync(process.env.CA), cert: fs.readFileSync(process.env.CERT), key: fs.readFileSync(process.env.KEY), requestCert: true, rejectUnauthorized: true, minVersion: 'TLSv1.2' };`;
const BARE_HTTPS = `${TLS_FILES}
const s = require('node:https').createServer(tls, (req, res) => { res.setHeader('content-type', 'application/json'); res.end('{"ok":true}'); });
s.listen(0, '127.0.0.1', () => process.stdout.write(s.address().port + '\\n'));`;
const BARE_FASTIFY = `${TLS_FILES}
const app = require('fastify')({ https: tls });
app.get('/v1/health', async () => ({ ok: true }));
app.listen({ port: 0, host: '127.0.0.1' }).then(() => process.stdout.write(app.server.address().port + '\\n'));`;

interface Running {
  readonly child: ChildProcess;
  readonly port: number;
}

async function startPeer(
  script: string,
  flags: readonly string[],
  env: Record<string, string>,
): Promise<Running> {
  const child = spawn(process.execPath, [...flags, '-e', script], {
    cwd: ROOT,
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const lines = createInterface({ input: child.stdout });
  const [line] = (await Promise.race([
    once(lines, 'line'),
    once(child, 'exit').then(() => {
      throw new Error('peer exited before listening');
    }),
  ])) as [string];
  return { child, port: Number(line) };
}

async function stop(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  child.kill('SIGTERM');
  await once(child, 'exit');
}

export async function run(args: string[]): Promise<void> {
  const count = option(args, '--services', 200);
  const rounds = option(args, '--rounds', 3);
  const flagsAt = args.indexOf('--flags');
  const agentFlags =
    flagsAt >= 0 ? (args[flagsAt + 1] ?? '').split(/\s+/).filter(Boolean) : [...AGENT_NODE_FLAGS];
  const work = await mkdtemp(join(tmpdir(), 'corral-bench-agent-'));
  const stateDir = join(work, 'agent');
  const ca = await createCa();
  const agentLeaf = await ca.issue({
    role: 'agent',
    hostId: 'bench',
    commonName: 'bench',
    ipAddresses: ['127.0.0.1'],
  });
  const client = await ca.issue({ role: 'controller-client', commonName: 'controller-client' });
  await writeBundle(join(stateDir, 'bundle'), {
    caPem: ca.certPem,
    manifest: {
      version: 1,
      hostId: 'bench',
      hostName: 'bench',
      address: '127.0.0.1',
      agentPort: 0,
      updaterPort: 0,
      controller: '127.0.0.1:9',
      controllerClientFingerprint: client.fingerprint,
      caFingerprint: ca.fingerprint,
    },
    identities: { agent: agentLeaf },
  });
  const peerEnv = { CA: join(work, 'ca.crt'), CERT: join(work, 'server.crt'), KEY: join(work, 'server.key') };
  await writeFile(peerEnv.CA, ca.certPem);
  await writeFile(peerEnv.CERT, agentLeaf.certPem);
  await writeFile(peerEnv.KEY, agentLeaf.keyPem, { mode: 0o600 });
  const material: TlsMaterial = { caPem: ca.certPem, certPem: client.certPem, keyPem: client.keyPem };
  const dispatcher = new Dispatcher({
    connect: clientTlsOptions(material, { roles: ['agent'], fingerprints: [agentLeaf.fingerprint] }),
  });
  const get = async (port: number, path: string): Promise<void> => {
    const res = await request(`https://127.0.0.1:${port}${path}`, { dispatcher });
    await res.body.dump();
    if (res.statusCode !== 200) throw new Error(`GET ${path}: ${res.statusCode}`);
  };

  // The agent as `npm run build` leaves it (tsc's modules) and as workers run it: the release
  // `corral release build` packs (the CLI bundled and split at its lazy imports).
  const release = join(work, 'release');
  const built = await buildCorralRelease({ installRoot: ROOT, out: join(work, 'release.tar.gz') });
  await mkdir(release);
  await execFileAsync('tar', ['xzf', built.file, '-C', release]);
  const builds = [
    { label: 'corral agent (release bundle)', bin: join(release, 'bin', 'corral.js') },
    { label: 'corral agent (tsc build)', bin: join(ROOT, 'bin', 'corral.js') },
  ] as const;

  const startAgent = async (
    bin: string,
    flags: readonly string[],
  ): Promise<{ child: ChildProcess; address: string }> => {
    await rm(join(stateDir, 'run'), { recursive: true, force: true });
    const child = spawn(
      process.execPath,
      [
        ...flags,
        bin,
        'agent',
        'serve',
        '--state-dir',
        stateDir,
        '--listen',
        '127.0.0.1:0',
        '--log-level',
        'error',
        '--heartbeat-interval',
        '1h',
        '--backoff-base',
        '1h',
        '--backoff-cap',
        '1h',
      ],
      { stdio: 'ignore' },
    );
    const address = await until(
      'agent listening',
      async () => {
        if (child.exitCode !== null) throw new Error('agent exited');
        return (await readEndpointsFile(stateDir))?.agent;
      },
      60_000,
      50,
    );
    return { child, address };
  };

  const variants = [
    { label: 'bare node', script: BARE_NODE, path: undefined },
    { label: 'bare node:https mTLS server', script: BARE_HTTPS, path: '/' },
    { label: 'bare fastify mTLS server', script: BARE_FASTIFY, path: '/v1/health' },
  ] as const;
  const flagSets = [
    { label: 'node defaults', flags: [] as readonly string[] },
    { label: 'agent flags', flags: agentFlags },
  ];
  const idle = new Map<string, number[]>();
  const push = (key: string, v: number): void => void idle.set(key, [...(idle.get(key) ?? []), v]);
  const loaded = new Map<string, number[]>();
  const applyMs = new Map<string, number[]>();
  let generation = 0;
  try {
    for (let round = 0; round < rounds; round++) {
      for (const fs of flagSets) {
        for (const v of variants) {
          const peer = await startPeer(v.script, fs.flags, peerEnv);
          try {
            if (v.path !== undefined) await get(peer.port, v.path);
            push(`${v.label}|${fs.label}`, await settledRss(peer.child.pid ?? 0));
          } finally {
            await stop(peer.child);
          }
        }
        for (const b of builds) {
          const key = `${b.label}|${fs.label}`;
          const agent = await startAgent(b.bin, fs.flags);
          try {
            const port = Number(agent.address.split(':').pop());
            await get(port, '/v1/health');
            push(key, await settledRss(agent.child.pid ?? 0));
            const call = async <T>(method: 'GET' | 'POST', path: string, body?: unknown): Promise<T> => {
              const res = await request(`https://${agent.address}${path}`, {
                dispatcher,
                method,
                ...(body !== undefined && {
                  body: JSON.stringify(body),
                  headers: { 'content-type': 'application/json' },
                }),
              });
              return (await res.body.json()) as T;
            };
            const services = Array.from({ length: count }, (_, i) => ({
              name: `s${generation}-${i}`,
              runtime: 'process',
              command: 'sleep',
              args: ['3600'],
              env: {},
              restart: 'always',
              stopGraceMs: 2000,
            }));
            const start = performance.now();
            await call('POST', '/v1/apply', { generation: ++generation, services });
            await until(
              'all running',
              async () => {
                const st = await call<AgentStatus>('GET', '/v1/status');
                return st.services.filter((s) => s.state === 'running').length === count ? true : undefined;
              },
              180_000,
              100,
            );
            applyMs.set(key, [...(applyMs.get(key) ?? []), performance.now() - start]);
            loaded.set(key, [...(loaded.get(key) ?? []), await settledRss(agent.child.pid ?? 0)]);
            await call('POST', '/v1/teardown', {});
            await until(
              'all stopped',
              async () =>
                (await call<AgentStatus>('GET', '/v1/status')).services.length === 0 ? true : undefined,
              180_000,
              100,
            );
          } finally {
            await stop(agent.child);
          }
        }
      }
    }
    const row = (label: string, samples: readonly number[]): string =>
      `  ${label.padEnd(48)} median ${mib(median(samples)).padStart(6)} MiB   (rounds: ${samples.map(mib).join(', ')})`;
    const lines = [
      `agent: resident memory (VmRSS) beside its peers, ${rounds} rounds; node ${process.version}, ${cpus().length} cores, load ${loadavg()
        .map((l) => fmt(l, 2))
        .join(' ')}`,
      `agent flags (the start command's): ${agentFlags.join(' ') || '(none)'}`,
      '',
      'idle (one mTLS request, then settled):',
    ];
    for (const fs of flagSets) {
      for (const name of [...variants.map((v) => v.label), ...builds.map((b) => b.label)]) {
        lines.push(row(`${name}, ${fs.label}`, idle.get(`${name}|${fs.label}`) ?? []));
      }
    }
    lines.push('', `supervising ${count} services:`);
    for (const b of builds) {
      for (const fs of flagSets) {
        const key = `${b.label}|${fs.label}`;
        lines.push(row(`${b.label}, ${fs.label}`, loaded.get(key) ?? []));
        const t = applyMs.get(key) ?? [];
        lines.push(
          `  ${'  apply until all running'.padEnd(48)} median ${fmt(median(t), 0).padStart(6)} ms    (rounds: ${t.map((x) => fmt(x, 0)).join(', ')})`,
        );
      }
    }
    lines.push('');
    for (const b of builds) {
      const key = `${b.label}|agent flags`;
      const idleMb = median(idle.get(key) ?? []) / 1e6;
      const loadedMb = median(loaded.get(key) ?? []) / 1e6;
      lines.push(
        `goals, ${b.label} with agent flags: idle < ${GOAL_IDLE_MB} MB: ${fmt(idleMb, 1)} MB ${idleMb < GOAL_IDLE_MB ? 'met' : 'NOT met'}; ` +
          `with ${count} services < ${GOAL_LOADED_MB} MB: ${fmt(loadedMb, 1)} MB ${loadedMb < GOAL_LOADED_MB ? 'met' : 'NOT met'}`,
      );
    }
    lines.push('');
    process.stdout.write(lines.join('\n'));
  } finally {
    await dispatcher.close();
    // Leftovers from an interrupted round: kill the groups the state dir records.
    for (const name of await readdir(join(stateDir, 'services')).catch(() => [] as string[])) {
      const rec = await readFile(join(stateDir, 'services', name, 'state.json'), 'utf8').catch(() => '');
      const pgid = rec ? (JSON.parse(rec) as { ref?: { pgid?: number } | null }).ref?.pgid : undefined;
      if (pgid && pgid > 1) {
        try {
          process.kill(-pgid, 'SIGKILL');
        } catch {
          // ESRCH: already gone
        }
      }
    }
    await rm(work, { recursive: true, force: true });
  }
}

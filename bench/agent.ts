import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import { Agent as Dispatcher, request } from 'undici';
import { clientTlsOptions, createCa, writeBundle } from '../pki/index.js';
import type { AgentStatus } from '../protocol/agent-api.js';
import { readEndpointsFile } from '../kit/endpoints-file.js';
import { fmt, median } from './lib/stats.js';

/**
 * `npm run bench -- agent [--services N] [--rounds R]`: the agent as its own process (the
 * built CLI), on a temporary state dir. Measures the time from one POST /v1/apply of N small
 * services (`sleep`) until /v1/status shows all of them running, and the agent's resident
 * memory (VmRSS) idle and while it supervises the N services.
 */
const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');

async function rssBytes(pid: number): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8');
  const kb = /VmRSS:\s+(\d+) kB/.exec(status)?.[1];
  return Number(kb ?? 0) * 1024;
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

export async function run(args: string[]): Promise<void> {
  const count = option(args, '--services', 200);
  const roundsWanted = option(args, '--rounds', 3);
  const stateDir = await mkdtemp(join(tmpdir(), 'corral-bench-agent-'));
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
  const agent = spawn(
    process.execPath,
    [
      join(ROOT, 'bin', 'corral.js'),
      'agent',
      'serve',
      '--state-dir',
      stateDir,
      '--listen',
      '127.0.0.1:0',
      '--log-level',
      'error',
      '--heartbeat-interval',
      '3600000ms',
      '--backoff-base',
      '3600000ms',
      '--backoff-cap',
      '3600000ms',
    ],
    { stdio: 'ignore' },
  );
  const dispatcher = new Dispatcher({
    connect: clientTlsOptions(
      { caPem: ca.certPem, certPem: client.certPem, keyPem: client.keyPem },
      { roles: ['agent'], fingerprints: [agentLeaf.fingerprint] },
    ),
  });
  try {
    const address = await until(
      'agent listening',
      async () => (await readEndpointsFile(stateDir))?.agent,
      30_000,
    );
    const call = async <T>(method: 'GET' | 'POST', path: string, body?: unknown): Promise<T> => {
      const res = await request(`https://${address}${path}`, {
        dispatcher,
        method,
        ...(body !== undefined && {
          body: JSON.stringify(body),
          headers: { 'content-type': 'application/json' },
        }),
      });
      return (await res.body.json()) as T;
    };
    await sleep(2000);
    const idleRss = await rssBytes(agent.pid ?? 0);
    const times: number[] = [];
    const loadedRss: number[] = [];
    let generation = 0;
    for (let round = 0; round < roundsWanted; round++) {
      const services = Array.from({ length: count }, (_, i) => ({
        name: `s${round}-${i}`,
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
        120_000,
      );
      times.push(performance.now() - start);
      await sleep(2000);
      loadedRss.push(await rssBytes(agent.pid ?? 0));
      await call('POST', '/v1/teardown', {});
      await until(
        'all stopped',
        async () => ((await call<AgentStatus>('GET', '/v1/status')).services.length === 0 ? true : undefined),
        120_000,
        100,
      );
    }
    const mib = (b: number) => fmt(b / 1024 / 1024, 1);
    process.stdout.write(
      [
        `agent: apply of ${count} services until all running, ${roundsWanted} rounds`,
        `  time to all running   median ${fmt(median(times), 0)} ms   (rounds: ${times.map((t) => fmt(t, 0)).join(', ')} ms)`,
        `  resident memory idle  ${mib(idleRss)} MiB`,
        `  resident memory with ${count} services  median ${mib(median(loadedRss))} MiB   (rounds: ${loadedRss.map(mib).join(', ')} MiB)`,
        '',
      ].join('\n'),
    );
  } finally {
    await dispatcher.close();
    agent.kill('SIGTERM');
    await once(agent, 'exit');
    // Leftovers from an interrupted round: kill the groups the state dir records.
    for (const name of await readdir(join(stateDir, 'services')).catch(() => [] as string[])) {
      const rec = await readFile(join(stateDir, 'services', name, 'state.json'), 'utf8').catch(() => '');
      const pgid = rec
        ? (JSON.parse(rec) as { process?: { pgid?: number } | null }).process?.pgid
        : undefined;
      if (pgid && pgid > 1) {
        try {
          process.kill(-pgid, 'SIGKILL');
        } catch {
          // ESRCH: already gone
        }
      }
    }
    await rm(stateDir, { recursive: true, force: true });
  }
}

import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { readFile, rm } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import type { AgentStatus } from '../protocol/agent-api.js';
import type { ContainerServiceSpec } from '../protocol/service-spec.js';
import { readEndpointsFile } from '../kit/endpoints-file.js';
import { agentCaller, makePki, makeWorker, startControllerStandIn, waitFor } from '../test/agent-fixture.js';
import { podmanUnavailable, startPodman, TEST_IMAGE } from '../test/podman-fixture.js';

/**
 * `npm run bench -- containers [--services 50]`: one agent (the built CLI, its own process) on a
 * private podman engine (see test/podman-fixture.ts); one apply of N container services
 * (`sleep 86400`), the time until /v1/status shows all running, and the agent's resident memory idle
 * and with them running (after a settle). Needs root and podman; says so otherwise.
 */
const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');

async function rssMb(pid: number): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8');
  return Number(/VmRSS:\s+(\d+) kB/.exec(status)?.[1] ?? 0) / 1024;
}

export async function run(argv: string[]): Promise<void> {
  const at = argv.indexOf('--services');
  const count = at >= 0 ? Number(argv[at + 1]) : 50;
  if (!Number.isInteger(count) || count < 1 || count > 500) {
    process.stderr.write('--services must be a whole number from 1 to 500\n');
    process.exitCode = 2;
    return;
  }
  const unavailable = await podmanUnavailable();
  if (unavailable) {
    process.stderr.write(`containers benchmark skipped: ${unavailable}\n`);
    process.exitCode = 1;
    return;
  }
  const podman = await startPodman();
  const pki = await makePki();
  const standIn = await startControllerStandIn(pki, { intervalMs: 1000 });
  const worker = await makeWorker(pki, standIn.address, { hostId: 'bench-containers' });
  let output = '';
  const agent = spawn(process.execPath, [
    join(ROOT, 'bin', 'corral.js'),
    'agent',
    'serve',
    '--state-dir',
    worker.stateDir,
    '--listen',
    '127.0.0.1:0',
    '--log-level',
    'warn',
    '--no-systemd',
    '--container-socket',
    podman.socket,
  ]);
  agent.stdout.on('data', (d: Buffer) => (output += d.toString()));
  agent.stderr.on('data', (d: Buffer) => (output += d.toString()));
  try {
    const address = await waitFor(
      `agent listening (${output})`,
      async () => (await readEndpointsFile(worker.stateDir))?.agent,
      60_000,
    );
    const c = agentCaller(address, pki.controllerClient, worker.agentFingerprint);
    await sleep(3000);
    const idle = await rssMb(agent.pid ?? 0);
    const services: ContainerServiceSpec[] = Array.from({ length: count }, (_, i) => ({
      name: `c${i}`,
      runtime: 'container',
      image: TEST_IMAGE,
      pull: 'never',
      command: '/bin/sleep',
      // Longer than any start-up of the whole set: a service that exited would never count.
      args: ['86400'],
      env: {},
      restart: 'always',
      stopGraceMs: 1000,
    }));
    const t0 = Date.now();
    const res = await c.call('POST', '/v1/apply', { generation: 1, services });
    if (res.status !== 202) throw new Error(`apply answered ${res.status}`);
    await waitFor(
      `${count} containers running`,
      async () => {
        const st = (await c.call<AgentStatus>('GET', '/v1/status')).body;
        return st.services.filter((s) => s.state === 'running').length === count;
      },
      30 * 60_000,
    );
    const seconds = (Date.now() - t0) / 1000;
    await sleep(3000);
    const loaded = await rssMb(agent.pid ?? 0);
    const running = (await podman.running('io.corral.managed=true')).length;
    await c.close();
    process.stdout.write(
      [
        `containers: ${count} services on one agent (podman ${podman.socket}, vfs, runc)`,
        `  time to all running: ${seconds.toFixed(1)} s (${(seconds / count).toFixed(2)} s each)`,
        `  containers the engine runs with Corral labels: ${running}`,
        `  agent RSS: idle ${idle.toFixed(1)} MB, with ${count} containers ${loaded.toFixed(1)} MB`,
        '',
      ].join('\n'),
    );
  } finally {
    agent.kill('SIGKILL');
    if (agent.exitCode === null) await once(agent, 'exit');
    await podman.close();
    await standIn.close();
    await rm(worker.stateDir, { recursive: true, force: true });
  }
}

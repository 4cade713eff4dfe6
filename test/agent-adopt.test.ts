import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { agentInstance } from '../agent/runtime/orphans.js';
import type { AgentStatus } from '../protocol/agent-api.js';
import { readEndpointsFile } from '../kit/endpoints-file.js';
import {
  agentCaller,
  groupPids,
  killServices,
  makePki,
  makeWorker,
  runCorral,
  sh,
  spawnCorral,
  startControllerStandIn,
  waitFor,
  type TestPki,
  type TestWorker,
} from './agent-fixture.js';

/** These tests run the built CLI (`npx tsc -p .` first), so the agent is a process of its own. */
let pki: TestPki;
let worker: TestWorker;
let standIn: Awaited<ReturnType<typeof startControllerStandIn>>;
const children: ReturnType<typeof spawnCorral>[] = [];

beforeAll(async () => {
  pki = await makePki();
  standIn = await startControllerStandIn(pki, { intervalMs: 200 });
  worker = await makeWorker(pki, standIn.address, { hostId: 'adopt-1' });
});

afterAll(async () => {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  await killServices(worker.stateDir);
  await standIn.close();
  await rm(worker.stateDir, { recursive: true, force: true });
});

function serve() {
  const child = spawnCorral([
    'agent',
    'serve',
    '--state-dir',
    worker.stateDir,
    '--listen',
    '127.0.0.1:0',
    '--heartbeat-interval',
    '200ms',
    '--heartbeat-min-interval',
    '50ms',
    '--adopt-poll',
    '100ms',
    '--log-poll',
    '100ms',
    '--restart-base',
    '20ms',
    '--log-level',
    'warn',
  ]);
  children.push(child);
  return child;
}

/** Waits until the agent process `child` has written its address (a new one). */
async function addressOf(child: ReturnType<typeof spawnCorral>, previous?: string): Promise<string> {
  return waitFor(`agent ${child.pid} listening (${child.output()})`, async () => {
    const lock = await readFile(join(worker.stateDir, 'run/agent.pid'), 'utf8').catch(() => '');
    if (!lock.includes(`"pid":${child.pid}`)) return undefined;
    const agent = (await readEndpointsFile(worker.stateDir))?.agent;
    return agent !== previous ? agent : undefined;
  });
}

/** Leaders of processes started for `service` (their environment names it). */
async function leadersOf(service: string): Promise<number[]> {
  const out: number[] = [];
  for (const name of await readdir('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    const env = await readFile(`/proc/${name}/environ`, 'utf8').catch(() => '');
    if (!env.split('\0').includes(`CORRAL_SERVICE=${service}`)) continue;
    if ((await groupPids(Number(name))).includes(Number(name))) out.push(Number(name));
  }
  return out;
}

describe('agent restarts (separate processes)', () => {
  it('refuses to start without an enrolled identity, with exit code 2', async () => {
    const empty = await mkdtemp(join(tmpdir(), 'corral-noid-'));
    try {
      const res = await runCorral(['agent', 'serve', '--state-dir', empty]);
      expect(res.code).toBe(2);
      expect(res.stderr).toContain('no enrolled identity');
      expect(res.stderr).toContain('CORRAL_ERR_BUNDLE_MISSING');
    } finally {
      await rm(empty, { recursive: true, force: true });
    }
  });

  it('leaves services running when killed -9; the next agent re-adopts them without a duplicate', async () => {
    const first = serve();
    const address = await addressOf(first);
    let c = agentCaller(address, pki.controllerClient, worker.agentFingerprint);
    const services = ['t1', 't2', 't3'].map((n) => sh(n, `while true; do echo ${n}-tick; sleep 0.1; done`));
    expect((await c.call('POST', '/v1/apply', { generation: 1, services })).status).toBe(202);
    const before = await waitFor('three running', async () => {
      const st = (await c.call<AgentStatus>('GET', '/v1/status')).body;
      return st.services.filter((s) => s.state === 'running').length === 3 ? st : undefined;
    });
    await waitFor('a heartbeat with the services', () =>
      standIn.heartbeats.some((h) => h.services.length === 3 && h.generation === 1),
    );
    await c.close();

    first.kill('SIGKILL');
    await once(first, 'exit');
    for (const s of before.services) expect(await groupPids(s.pid ?? 0)).toContain(s.pid);
    const logFile = join(worker.stateDir, 'logs/worker.log');
    const ticksAtDeath = (await readFile(logFile, 'utf8'))
      .split('\n')
      .filter((l) => l.includes(' t1 ')).length;

    // A crash between a spawn and its record: t3's record lost its pid. And a stray process
    // of this agent instance that no record explains at all.
    const t3 = join(worker.stateDir, 'services/t3/state.json');
    await writeFile(t3, JSON.stringify({ ...JSON.parse(await readFile(t3, 'utf8')), ref: null }));
    const ghost = spawn('sleep', ['300'], {
      detached: true,
      stdio: 'ignore',
      env: { CORRAL_SERVICE: 'ghost', CORRAL_AGENT_INSTANCE: agentInstance(worker.stateDir) },
    });
    ghost.unref();

    const second = serve();
    const address2 = await addressOf(second, address);
    c = agentCaller(address2, pki.controllerClient, worker.agentFingerprint);
    try {
      const after = await waitFor('re-adopted', async () => {
        const st = (await c.call<AgentStatus>('GET', '/v1/status')).body;
        return st.services.filter((s) => s.state === 'running').length === 3 ? st : undefined;
      });
      expect(after.generation).toBe(1);
      await waitFor('the stray stopped', async () => (await groupPids(ghost.pid ?? 0)).length === 0);
      for (const s of after.services) {
        const old = before.services.find((b) => b.name === s.name);
        expect({ name: s.name, pid: s.pid, restarts: s.restarts }).toEqual({
          name: s.name,
          pid: old?.pid,
          restarts: 0,
        });
        expect(await leadersOf(s.name)).toEqual([s.pid]);
      }
      // Desired state survived: the same generation again is a no-op.
      const again = await c.call<{ noop: boolean }>('POST', '/v1/apply', { generation: 1, services });
      expect(again.body.noop).toBe(true);
      // Output from while no agent ran is shipped, not lost.
      await waitFor('ticks keep flowing', async () => {
        const n = (await readFile(logFile, 'utf8')).split('\n').filter((l) => l.includes(' t1 ')).length;
        return n > ticksAtDeath + 5;
      });
      // An adopted process is still supervised: kill it and it comes back.
      const victim = after.services.find((s) => s.name === 't2')?.pid ?? 0;
      process.kill(-victim, 'SIGKILL');
      const back = await waitFor('t2 restarted', async () => {
        const st = (await c.call<AgentStatus>('GET', '/v1/status')).body;
        const t2 = st.services.find((s) => s.name === 't2');
        return t2?.state === 'running' && t2.pid !== victim ? t2 : undefined;
      });
      expect(back.restarts).toBe(1);
      expect(await leadersOf('t2')).toEqual([back.pid]);
    } finally {
      await c.close();
    }
    second.kill('SIGTERM');
    const [code] = (await once(second, 'exit')) as [number | null];
    expect(code).toBe(0);
    // A clean stop also leaves the services running.
    expect((await leadersOf('t1')).length).toBe(1);
  });
});

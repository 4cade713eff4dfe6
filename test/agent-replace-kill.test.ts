import { once } from 'node:events';
import { readdir, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { agentInstance } from '../agent/runtime/orphans.js';
import type { AgentStatus } from '../protocol/agent-api.js';
import { readEndpointsFile } from '../kit/endpoints-file.js';
import {
  agentCaller,
  killServices,
  makePki,
  makeWorker,
  sh,
  spawnCorral,
  startControllerStandIn,
  waitFor,
  type TestPki,
  type TestWorker,
} from './agent-fixture.js';

/**
 * Issue 10: an agent SIGKILLed during a replace-all apply must leave, once restarted, exactly
 * one process per service, running the newest spec. The agent is the built CLI (`npx tsc -p .`
 * first) as a process of its own; the check reads /proc, not the agent's own view.
 */
const SERVICES = 10;
const ROUNDS = 12;
/** Kill points are drawn in [0, this) ms after the apply was accepted. */
const MAX_KILL_DELAY_MS = 900;
/** An agent start can take this long on a loaded machine (CI runs two test files at once). */
const AGENT_START_TIMEOUT_MS = 90_000;

let pki: TestPki;
let worker: TestWorker;
let standIn: Awaited<ReturnType<typeof startControllerStandIn>>;
const children: ReturnType<typeof spawnCorral>[] = [];

beforeAll(async () => {
  pki = await makePki();
  standIn = await startControllerStandIn(pki, { intervalMs: 500 });
  worker = await makeWorker(pki, standIn.address, { hostId: 'replace-kill-1' });
});

afterAll(async () => {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  await killAllOf(agentInstance(worker.stateDir));
  await killServices(worker.stateDir);
  await standIn.close();
  await rm(worker.stateDir, { recursive: true, force: true });
});

/**
 * `restartBaseMs` varies per start: a service whose old process died while no agent ran is
 * restarted after a backoff drawn from it, and that restart must not race the startup
 * reconcile's replace of the same service (the window issue 10 found).
 */
function serve(restartBaseMs = 20) {
  const child = spawnCorral([
    'agent',
    'serve',
    '--state-dir',
    worker.stateDir,
    '--listen',
    '127.0.0.1:0',
    '--heartbeat-interval',
    '500ms',
    '--adopt-poll',
    '100ms',
    '--log-poll',
    '200ms',
    '--restart-base',
    `${restartBaseMs}ms`,
    '--stop-grace',
    '3000ms',
    '--concurrency',
    '4',
    '--log-level',
    'warn',
  ]);
  children.push(child);
  return child;
}

/** The address the agent process `child` wrote (the endpoints file outlives a killed agent). */
async function addressOf(child: ReturnType<typeof spawnCorral>, previous?: string): Promise<string> {
  return waitFor(
    `agent ${child.pid} listening (${child.output()})`,
    async () => {
      if (child.exitCode !== null) throw new Error(`agent exited: ${child.output()}`);
      const lock = await readFile(join(worker.stateDir, 'run/agent.pid'), 'utf8').catch(() => '');
      if (!lock.includes(`"pid":${child.pid}`)) return undefined;
      const endpoints = await readEndpointsFile(worker.stateDir).catch(() => undefined);
      return endpoints?.agent !== previous ? endpoints?.agent : undefined;
    },
    AGENT_START_TIMEOUT_MS,
  );
}

/** The spec of `name` in round `round`: its command line and environment both carry the round. */
function spec(name: string, round: number) {
  // TERM is handled slowly (≈ 0.2 s), so a replace takes a while and kills land inside stops.
  return sh(name, `trap 'sleep 0.2; exit 0' TERM; while :; do sleep 0.1; done # round-${round}`, {
    env: { ROUND: String(round) },
    stopGraceMs: 3000,
  });
}

interface Leader {
  readonly pid: number;
  readonly service: string;
  readonly round: string | undefined;
  readonly cmdline: string;
}

/** Every process-group leader in /proc whose environment says this agent instance started it. */
async function leaders(instance: string): Promise<Leader[]> {
  const out: Leader[] = [];
  for (const entry of await readdir('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const stat = await readFile(`/proc/${entry}/stat`, 'utf8').catch(() => '');
    const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    if (rest[0] === undefined || rest[0] === 'Z' || Number(rest[2]) !== Number(entry)) continue;
    const env = (await readFile(`/proc/${entry}/environ`, 'utf8').catch(() => '')).split('\0');
    if (!env.includes(`CORRAL_AGENT_INSTANCE=${instance}`)) continue;
    const service = env.find((v) => v.startsWith('CORRAL_SERVICE='))?.slice('CORRAL_SERVICE='.length);
    if (!service) continue;
    const cmdline = (await readFile(`/proc/${entry}/cmdline`, 'utf8').catch(() => '')).replace(/\0/g, ' ');
    const round = env.find((v) => v.startsWith('ROUND='))?.slice('ROUND='.length);
    out.push({ pid: Number(entry), service, round, cmdline });
  }
  return out;
}

async function killAllOf(instance: string): Promise<void> {
  for (const l of await leaders(instance)) {
    try {
      process.kill(-l.pid, 'SIGKILL');
    } catch {
      // ESRCH: gone between the scan and the kill
    }
  }
}

describe('agent SIGKILLed during a replace-all apply (separate processes)', () => {
  it(`leaves one process per service on the newest spec, over ${ROUNDS} random kill points`, async () => {
    const instance = agentInstance(worker.stateDir);
    const names = Array.from({ length: SERVICES }, (_, i) => `rk-${String(i).padStart(2, '0')}`);
    let agent = serve();
    let address = await addressOf(agent);
    let c = agentCaller(address, pki.controllerClient, worker.agentFingerprint);
    const settled = (round: number) =>
      waitFor(
        `round ${round} settled`,
        async () => {
          const st = (await c.call<AgentStatus>('GET', '/v1/status')).body;
          const done =
            !st.applying &&
            st.generation === round &&
            st.services.length === SERVICES &&
            st.services.every((s) => s.state === 'running' && s.pid !== null);
          return done ? st : undefined;
        },
        AGENT_START_TIMEOUT_MS,
      );
    const first = await c.call('POST', '/v1/apply', {
      generation: 1,
      services: names.map((n) => spec(n, 1)),
    });
    expect(first.status).toBe(202);
    await settled(1);

    const report: string[] = [];
    for (let round = 2; round <= ROUNDS + 1; round++) {
      const res = await c.call('POST', '/v1/apply', {
        generation: round,
        services: names.map((n) => spec(n, round)),
      });
      expect(res.status).toBe(202);
      const delayMs = Math.floor(Math.random() * MAX_KILL_DELAY_MS);
      await sleep(delayMs);
      agent.kill('SIGKILL');
      await once(agent, 'exit');
      await c.close();
      // Where the kill landed: how many services were on the new spec already, how many on the old.
      const atKill = await leaders(instance);
      const landed = `${atKill.filter((l) => l.round === String(round)).length} new, ${
        atKill.filter((l) => l.round === String(round - 1)).length
      } old`;

      const restartBaseMs = 20 + Math.floor(Math.random() * 1000);
      agent = serve(restartBaseMs);
      address = await addressOf(agent, address);
      c = agentCaller(address, pki.controllerClient, worker.agentFingerprint);
      const st = await settled(round);
      // Past any restart backoff: an orphan started by a late restart would be visible now.
      await sleep(400);
      const found = await leaders(instance);
      const view = names.map((name) => {
        const mine = found.filter((l) => l.service === name);
        return {
          name,
          processes: mine.length,
          rounds: mine.map((l) => l.round),
          cmdlineRound: mine.every((l) => l.cmdline.includes(`# round-${round}`)),
          pidMatchesStatus: mine[0]?.pid === st.services.find((s) => s.name === name)?.pid,
        };
      });
      const bad = view.filter(
        (v) => v.processes !== 1 || v.rounds[0] !== String(round) || !v.cmdlineRound || !v.pidMatchesStatus,
      );
      report.push(
        `round ${round}: kill after ${delayMs} ms (${landed} running), restart base ${restartBaseMs} ms: ${bad.length} services wrong`,
      );
      expect({ round, delayMs, bad }).toEqual({ round, delayMs, bad: [] });
      expect(found.length).toBe(SERVICES);
    }
    console.log(report.join('\n'));
    await c.close();
    agent.kill('SIGTERM');
    await once(agent, 'exit');
  }, 900_000);
});

import { spawn } from 'node:child_process';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import type { ProcessServiceSpec } from '../../protocol/service-spec.js';
import { agentInstance, INSTANCE_ENV, SERVICE_ENV, SPEC_HASH_ENV } from '../runtime/orphans.js';
import { plan } from '../reconcile/plan.js';
import { bootId, identityOf } from '../../kit/proc.js';
import { createProcessRuntime } from '../runtime/process-runtime.js';
import type { Runtime, StartRequest } from '../runtime/runtime.js';
import { serviceDirs, type ServiceRecord } from './service-record.js';
import { restoreSupervisor, type SupervisorDeps } from './service-supervisor.js';
import { createServiceTable, UNKNOWN_SPEC_HASH } from './service-table.js';
import { createWorkerLog } from '../../kit/worker-log.js';
import { specHash } from '../reconcile/spec-hash.js';

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const fn of cleanups.splice(0).reverse()) await fn();
});

const spec = (round: number): ProcessServiceSpec => ({
  name: 'web',
  runtime: 'process',
  command: '/bin/sh',
  args: ['-c', `while :; do sleep 0.1; done # round-${round}`],
  env: { ROUND: String(round) },
  restart: 'always',
  stopGraceMs: 2000,
});

/** Starts a process the way a (since killed) agent would have: own session, marked environment. */
async function orphan(instance: string, s: ProcessServiceSpec, hash: string) {
  const child = spawn(s.command, s.args, {
    detached: true,
    stdio: 'ignore',
    env: {
      PATH: '/usr/bin:/bin',
      ...s.env,
      [SERVICE_ENV]: s.name,
      [INSTANCE_ENV]: instance,
      [SPEC_HASH_ENV]: hash,
    },
  });
  child.unref();
  await new Promise((r) => child.once('spawn', r));
  const id = await identityOf(child.pid ?? 0);
  if (!id) throw new Error('orphan did not start');
  return id;
}

/** Leaders in /proc that `instance` started for `service`, with their ROUND. */
async function leaders(instance: string): Promise<{ pid: number; round: string | undefined }[]> {
  const out: { pid: number; round: string | undefined }[] = [];
  for (const entry of await readdir('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const stat = await readFile(`/proc/${entry}/stat`, 'utf8').catch(() => '');
    const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    if (rest[0] === undefined || rest[0] === 'Z' || Number(rest[2]) !== Number(entry)) continue;
    const env = (await readFile(`/proc/${entry}/environ`, 'utf8').catch(() => '')).split('\0');
    if (!env.includes(`CORRAL_AGENT_INSTANCE=${instance}`)) continue;
    out.push({ pid: Number(entry), round: env.find((v) => v.startsWith('ROUND='))?.slice(6) });
  }
  return out;
}

/**
 * The real process runtime, whose first start waits at a gate: a spawn that takes long, as on
 * a loaded machine. Everything else (spawn, signals, /proc) is real.
 */
function slowFirstStart(real: Runtime) {
  let calls = 0;
  let release: () => void = () => undefined;
  let entered: () => void = () => undefined;
  const gate = new Promise<void>((r) => (release = r));
  const inside = new Promise<void>((r) => (entered = r));
  const runtime: Runtime = {
    ...real,
    async start(request: StartRequest) {
      if (calls++ === 0) {
        entered();
        await gate;
      }
      return real.start(request);
    },
  };
  return { runtime, inside, release };
}

describe('service supervisor: one process per service', () => {
  it('a replace that arrives while a restart is spawning leaves one process, on the new spec', async () => {
    const root = await mkdtemp(join(tmpdir(), 'corral-sup-'));
    const instance = agentInstance(root);
    const real = createProcessRuntime({ adoptPollMs: 50 });
    cleanups.push(async () => {
      for (const l of await leaders(instance)) process.kill(-l.pid, 'SIGKILL');
      real.close();
      await rm(root, { recursive: true, force: true });
    });
    const slow = slowFirstStart(real);
    const dirs = serviceDirs(join(root, 'services'));
    const deps: SupervisorDeps = {
      runtimes: new Map([['process', slow.runtime]]),
      dirs,
      log: pino({ level: 'silent' }),
      limits: { maxRestarts: 5, windowMs: 60_000, baseDelayMs: 1, maxDelayMs: 1 },
      random: () => 0,
      now: Date.now,
      baseEnv: { PATH: '/usr/bin:/bin' },
      defaultStopGraceMs: 2000,
      instance,
      emit: () => undefined,
    };
    const old = spec(1);
    // What a killed agent left: the old spec, running, with a process that is gone.
    const rec: ServiceRecord = {
      version: 2,
      spec: old,
      specHash: specHash(old),
      generation: 1,
      state: 'running',
      ref: {
        kind: 'process',
        pid: process.pid,
        pgid: process.pid,
        startTime: 'gone',
        bootId: await bootId(),
      },
      restarts: 0,
      restartTimes: [],
      lastError: null,
      since: null,
    };
    const sup = await restoreSupervisor(deps, rec);
    cleanups.push(async () => {
      sup.detach();
      await sup.flush();
    });
    // The restart (old spec) is now spawning; the startup reconcile replaces it meanwhile.
    await slow.inside;
    const next = spec(2);
    const replaced = sup.start({ spec: next, specHash: specHash(next) }, 2);
    setTimeout(slow.release, 100);
    expect(await replaced).toBeUndefined();
    await new Promise((r) => setTimeout(r, 300));
    await sup.flush();
    const found = await leaders(instance);
    expect(found).toEqual([{ pid: sup.pid(), round: '2' }]);
    const onDisk = JSON.parse(await readFile(join(root, 'services/web/state.json'), 'utf8')) as ServiceRecord;
    expect({ pid: onDisk.ref?.kind === 'process' && onDisk.ref.pid, hash: onDisk.specHash }).toEqual({
      pid: sup.pid(),
      hash: specHash(next),
    });
  });
});

describe('service table restore: which process is the service', () => {
  async function setup() {
    const root = await mkdtemp(join(tmpdir(), 'corral-restore-'));
    const instance = agentInstance(root);
    const runtime = createProcessRuntime({ adoptPollMs: 50 });
    const dirs = serviceDirs(join(root, 'services'));
    const table = createServiceTable({
      runtimes: new Map([['process', runtime]]),
      dirs,
      log: pino({ level: 'silent' }),
      limits: { maxRestarts: 5, windowMs: 60_000, baseDelayMs: 20, maxDelayMs: 20 },
      random: () => 0,
      now: Date.now,
      baseEnv: { PATH: '/usr/bin:/bin' },
      defaultStopGraceMs: 2000,
      instance,
      emit: () => undefined,
      hostname: 'h',
      workerLog: createWorkerLog(join(root, 'logs/worker.log')),
    });
    cleanups.push(async () => {
      await table.detachAll();
      for (const l of await leaders(instance)) process.kill(-l.pid, 'SIGKILL');
      runtime.close();
      await rm(root, { recursive: true, force: true });
    });
    const record = (s: ProcessServiceSpec, ref: ServiceRecord['ref']): ServiceRecord => ({
      version: 2,
      spec: s,
      specHash: specHash(s),
      generation: 2,
      state: 'running',
      ref,
      restarts: 0,
      restartTimes: [],
      lastError: null,
      since: null,
    });
    return { instance, dirs, table, record };
  }

  it('a recorded process whose environment names another spec is replaced, not taken for the record', async () => {
    const t = await setup();
    const old = spec(1);
    const next = spec(2);
    // What the old race left: the record names the new spec, its process runs the old one.
    const id = await orphan(t.instance, old, specHash(old));
    await t.dirs.save(t.record(next, { kind: 'process', ...id, pgid: id.pid }), true);
    await t.table.restore();
    expect(t.table.current().map((c) => c.specHash)).toEqual([UNKNOWN_SPEC_HASH]);
    const steps = plan(t.table.current(), {
      generation: 2,
      services: [{ spec: next, specHash: specHash(next) }],
    });
    expect(steps.map((s) => s.kind)).toEqual(['replace']);
  });

  it('of two unrecorded processes, adopts the one on the recorded spec and stops the other', async () => {
    const t = await setup();
    const old = spec(1);
    const next = spec(2);
    const stale = await orphan(t.instance, old, specHash(old));
    const fresh = await orphan(t.instance, next, specHash(next));
    await t.dirs.save(t.record(next, null), true);
    await t.table.restore();
    expect(t.table.current().map((c) => c.specHash)).toEqual([specHash(next)]);
    expect(t.table.statuses()[0]?.pid).toBe(fresh.pid);
    expect(await leaders(t.instance)).toEqual([{ pid: fresh.pid, round: '2' }]);
    expect((await identityOf(stale.pid)) === undefined).toBe(true);
  });
});

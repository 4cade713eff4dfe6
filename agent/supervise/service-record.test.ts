import { spawn } from 'node:child_process';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import type { ProcessServiceSpec } from '../../protocol/service-spec.js';
import { identityOf, isSameProcess } from '../../kit/proc.js';
import { agentInstance } from '../runtime/orphans.js';
import { createProcessRuntime } from '../runtime/process-runtime.js';
import { serviceDirs, type ServiceRecord } from './service-record.js';
import { createServiceTable } from './service-table.js';
import { specHash } from '../reconcile/spec-hash.js';
import { createWorkerLog } from '../../kit/worker-log.js';

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const fn of cleanups.splice(0).reverse()) await fn();
});

const spec: ProcessServiceSpec = {
  name: 'old',
  runtime: 'process',
  command: '/bin/sh',
  args: ['-c', 'exec sleep 300'],
  env: {},
  restart: 'always',
  stopGraceMs: 1000,
};

describe('service record versions', () => {
  it('a version 1 record (process field) still reads, and its live process is re-adopted, not started again', async () => {
    const root = await mkdtemp(join(tmpdir(), 'corral-record-'));
    const child = spawn('/bin/sh', ['-c', 'exec sleep 300'], { detached: true, stdio: 'ignore' });
    child.unref();
    await new Promise((r) => child.once('spawn', r));
    const id = await identityOf(child.pid ?? 0);
    if (!id) throw new Error('no /proc entry for the process');
    const runtime = createProcessRuntime({ adoptPollMs: 50 });
    cleanups.push(async () => {
      runtime.close();
      if (await isSameProcess(id)) process.kill(-id.pid, 'SIGKILL');
      await rm(root, { recursive: true, force: true });
    });
    // Exactly what an agent before container services wrote.
    const v1 = {
      version: 1,
      spec,
      specHash: specHash(spec),
      generation: 3,
      state: 'running',
      process: { pid: id.pid, pgid: id.pid, startTime: id.startTime, bootId: id.bootId },
      restarts: 2,
      restartTimes: [1, 2],
      lastError: null,
      since: '2026-01-01T00:00:00.000Z',
    };
    await mkdir(join(root, 'services/old'), { recursive: true });
    await writeFile(join(root, 'services/old/state.json'), JSON.stringify(v1));

    const dirs = serviceDirs(join(root, 'services'));
    const loaded = await dirs.load('old');
    const { process: _old, ...rest } = v1;
    expect(loaded).toEqual({
      ...rest,
      version: 2,
      ref: { kind: 'process', pid: id.pid, pgid: id.pid, startTime: id.startTime, bootId: id.bootId },
    });
    expect(loaded && 'process' in loaded).toBe(false);

    const table = createServiceTable({
      runtimes: new Map([['process', runtime]]),
      dirs,
      log: pino({ level: 'silent' }),
      limits: { maxRestarts: 5, windowMs: 60_000, baseDelayMs: 20, maxDelayMs: 20 },
      random: () => 0,
      now: Date.now,
      baseEnv: { PATH: '/usr/bin:/bin' },
      defaultStopGraceMs: 1000,
      instance: agentInstance(root),
      emit: () => undefined,
      hostname: 'h',
      workerLog: createWorkerLog(join(root, 'logs/worker.log')),
    });
    cleanups.push(() => table.detachAll());
    await table.restore();
    expect(table.statuses().map((s) => [s.name, s.state, s.pid, s.restarts, s.runtime])).toEqual([
      ['old', 'running', id.pid, 2, 'process'],
    ]);
    // The next write is version 2.
    await table.start({ spec, specHash: specHash(spec) }, 4);
    await table.detachAll();
    const onDisk = JSON.parse(await readFile(join(root, 'services/old/state.json'), 'utf8')) as ServiceRecord;
    expect(onDisk.version).toBe(2);
    expect(onDisk.ref?.kind).toBe('process');
    if (onDisk.ref?.kind === 'process') {
      const now = onDisk.ref;
      cleanups.push(async () => {
        if (await isSameProcess(now)) process.kill(-now.pid, 'SIGKILL');
      });
    }
  });

  it('a record of neither version is refused by name', async () => {
    const root = await mkdtemp(join(tmpdir(), 'corral-record-'));
    cleanups.push(() => rm(root, { recursive: true, force: true }));
    await mkdir(join(root, 'services/old'), { recursive: true });
    await writeFile(join(root, 'services/old/state.json'), JSON.stringify({ version: 3, spec }));
    await expect(serviceDirs(join(root, 'services')).load('old')).rejects.toThrow(/old service record/);
  });
});

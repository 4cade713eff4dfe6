import { once } from 'node:events';
import { mkdir, mkdtemp, readdir, readFile, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
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
  waitFor,
  type TestPki,
  type TestWorker,
} from './agent-fixture.js';

/** Runs the built CLI (`npx tsc -p .` first); everything lives under a temporary root. */
let pki: TestPki;
let root: string;
let worker: TestWorker;
let agentProcess: ReturnType<typeof spawnCorral> | undefined;
const dirs = (r: string) => ({
  state: join(r, 'var-lib-corral'),
  install: join(r, 'opt-corral'),
  updater: join(r, 'updater-state'),
  outside: join(r, 'not-corral'),
});

beforeAll(async () => {
  pki = await makePki();
  root = await mkdtemp(join(tmpdir(), 'corral-sd-'));
  const d = dirs(root);
  worker = await makeWorker(pki, '127.0.0.1:9', { hostId: 'doomed', stateDir: d.state });
  await mkdir(join(d.install, 'releases/1.0.0/bin'), { recursive: true });
  await writeFile(join(d.install, 'releases/1.0.0/bin/corral'), '#!/bin/sh\n');
  await mkdir(d.updater, { recursive: true });
  await writeFile(join(d.updater, 'history.json'), '[]');
  await mkdir(d.outside, { recursive: true });
  await writeFile(join(d.outside, 'precious.txt'), 'keep me');
  // A link out of the state dir: removed as a link, never followed.
  await symlink(d.outside, join(d.state, 'link-out'));
});

afterAll(async () => {
  if (agentProcess && agentProcess.exitCode === null && agentProcess.signalCode === null)
    agentProcess.kill('SIGKILL');
  await killServices(worker.stateDir);
  await rm(root, { recursive: true, force: true });
});

describe('self-destruct', () => {
  it('lists what would go with --dry-run', async () => {
    const d = dirs(root);
    const res = await runCorral([
      'agent',
      'self-destruct',
      '--dry-run',
      '--json',
      '--state-dir',
      d.state,
      '--install-dir',
      d.install,
      '--extra-dir',
      d.updater,
    ]);
    expect(res.code).toBe(0);
    const plan = JSON.parse(res.stdout) as { delete: string[]; keep: string[]; dryRun: boolean };
    expect(plan).toMatchObject({
      dryRun: true,
      delete: [d.state, d.install, d.updater],
      keep: [join(d.state, 'logs')],
    });
    expect(await readdir(d.state)).toContain('bundle');
  });

  it('refuses to plan the deletion of a system directory', async () => {
    const res = await runCorral([
      'agent',
      'self-destruct',
      '--dry-run',
      '--state-dir',
      join(root, 'x'),
      '--install-dir',
      '/usr',
    ]);
    expect(res.code).not.toBe(0);
    expect(res.stderr).toContain('refusing to delete /usr');
  });

  it('replies at once, then a reaper stops the agent and every service and deletes Corral dirs, keeping logs', async () => {
    const d = dirs(root);
    agentProcess = spawnCorral([
      'agent',
      'serve',
      '--state-dir',
      d.state,
      '--listen',
      '127.0.0.1:0',
      '--install-dir',
      d.install,
      '--extra-dir',
      d.updater,
      '--log-poll',
      '100ms',
      '--log-level',
      'warn',
    ]);
    const address = await waitFor(
      `agent listening (${agentProcess.output()})`,
      async () => (await readEndpointsFile(d.state))?.agent,
    );
    const c = agentCaller(address, pki.controllerClient, worker.agentFingerprint);
    let pgids: number[];
    try {
      await c.call('POST', '/v1/apply', {
        generation: 1,
        services: [
          sh('web', 'echo web-up; sleep 300 & wait'),
          sh('db', 'exec sleep 300', { stopGraceMs: 500 }),
        ],
      });
      pgids = await waitFor('services running', async () => {
        const st = (await c.call<AgentStatus>('GET', '/v1/status')).body;
        return st.services.filter((s) => s.state === 'running').length === 2
          ? st.services.map((s) => s.pid ?? 0)
          : undefined;
      });
      await waitFor('web output logged', async () =>
        (await readFile(join(d.state, 'logs/worker.log'), 'utf8').catch(() => '')).includes('web-up'),
      );
      const wrong = await c.call<{ error: { code: string } }>('POST', '/v1/self-destruct', {
        hostId: 'someone-else',
      });
      expect(wrong.status).toBe(409);
      const res = await c.call<{ hostId: string }>('POST', '/v1/self-destruct', { hostId: 'doomed' });
      expect(res.status).toBe(202);
      expect(res.body.hostId).toBe('doomed');
      const refused = await c
        .call('POST', '/v1/apply', { generation: 2, services: [] })
        .catch(() => ({ status: 0 }));
      expect([409, 503, 0]).toContain(refused.status);
    } finally {
      await c.close();
    }
    const [code] = (await once(agentProcess, 'exit')) as [number | null];
    expect(code).toBe(0);
    await waitFor(
      'state dir reduced to its logs',
      async () => (await readdir(d.state)).join() === 'logs',
      30_000,
    );
    await waitFor('install and updater dirs gone', async () => {
      const left = await readdir(root);
      return !left.includes('opt-corral') && !left.includes('updater-state');
    });
    for (const pgid of pgids) expect(await groupPids(pgid)).toEqual([]);
    expect(await readFile(join(d.outside, 'precious.txt'), 'utf8')).toBe('keep me');
    const log = await waitFor('reaper line in the kept log', async () => {
      const text = await readFile(join(d.state, 'logs/worker.log'), 'utf8');
      return text.includes('self-destruct finished') ? text : undefined;
    });
    expect(log).toContain('web-up');
    expect(log).toMatch(
      / corral-reaper \d+ self-destruct - self-destruct finished: 0 daemons and 2 services stopped, \d+ paths deleted, 0 errors/,
    );
    expect((await stat(join(d.state, 'logs'))).isDirectory()).toBe(true);
  });
});

import { spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { once } from 'node:events';
import {
  cp,
  lstat,
  mkdtemp,
  open,
  readdir,
  readFile,
  rm,
  truncate,
  unlink,
  writeFile,
} from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sqlite3 from 'sqlite3';
import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { agentInstance } from '../agent/runtime/orphans.js';
import type { AgentStatus } from '../protocol/agent-api.js';
import { readEndpointsFile } from '../kit/endpoints-file.js';
import {
  agentCaller,
  killServices,
  makePki,
  makeWorker,
  ROOT,
  sh,
  startControllerStandIn,
  waitFor,
  type TestPki,
  type TestWorker,
} from './agent-fixture.js';

/**
 * Issue 10: a daemon never starts on a state file that existed and is now missing, empty or
 * damaged. Each case damages a real state dir the way the world does, starts the daemon as
 * its own process (the built CLI: `npx tsc -p .` first), and checks what an operator sees:
 * a non-zero exit, the file named, the way back named, and the disk left exactly as it was.
 */
/** A daemon start (or refusal) can take this long on a loaded machine. */
const CASE_TIMEOUT_MS = 90_000;

interface Run {
  readonly code: number | null;
  readonly output: string;
}

/** Runs `corral ARGS` to its end (killed after `timeoutMs`: a daemon that did not refuse). */
async function corral(args: string[], timeoutMs = CASE_TIMEOUT_MS): Promise<Run> {
  const child = spawn(process.execPath, [join(ROOT, 'bin', 'corral.js'), ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout.on('data', (d: Buffer) => (output += d.toString()));
  child.stderr.on('data', (d: Buffer) => (output += d.toString()));
  const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
  const [code] = (await once(child, 'exit')) as [number | null];
  clearTimeout(timer);
  return { code, output };
}

async function kill(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  child.kill('SIGKILL');
  await once(child, 'exit');
}

/** Every entry under `dir`: type, mode, size and content hash, by relative path. */
async function snapshot(dir: string): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  for (const entry of await readdir(dir, { recursive: true })) {
    const path = join(dir, entry);
    const st = await lstat(path);
    const mode = (st.mode & 0o7777).toString(8);
    if (st.isFile()) {
      const hash = createHash('sha256')
        .update(await readFile(path))
        .digest('hex');
      out[entry] = `file ${mode} ${st.size} ${hash}`;
    } else {
      out[entry] = `${st.isDirectory() ? 'dir' : 'other'} ${mode}`;
    }
  }
  return out;
}

/** Restores `dir` from the copy `backup` (what an operator's backup restore does). */
async function restore(backup: string, dir: string): Promise<void> {
  await rm(dir, { recursive: true, force: true });
  await cp(backup, dir, { recursive: true, preserveTimestamps: true });
}

function exec(db: sqlite3.Database, text: string): Promise<void> {
  return new Promise((resolve, reject) => db.exec(text, (err) => (err ? reject(err) : resolve())));
}

/** Writes one page of random bytes over page `page` (0-based) of the file. */
async function garbagePage(path: string, page: number, pageBytes: number): Promise<void> {
  const fh = await open(path, 'r+');
  try {
    const junk = Buffer.alloc(pageBytes);
    for (let i = 0; i < junk.length; i++) junk[i] = (i * 131 + 7) & 0xff;
    await fh.write(junk, 0, junk.length, page * pageBytes);
    await fh.sync();
  } finally {
    await fh.close();
  }
}

function expectRefusal(run: Run, file: string, daemon: 'controller' | 'agent'): void {
  expect(run.code, run.output).not.toBe(0);
  expect(run.code, run.output).not.toBeNull(); // null: it did not exit, so it started
  expect(run.output).toContain(file);
  expect(run.output).toContain('CORRAL_ERR_STATE_DAMAGED');
  expect(run.output).toContain('backup');
  expect(run.output).toContain(
    daemon === 'controller' ? 'corral controller init --state-dir' : 'corral agent serve --state-dir',
  );
  expect(run.output).toContain('--reinitialize');
  expect(run.output).toContain('which destroys');
  // Read as a person reads it: the file named on a line of its own, not behind an escaped \n.
  expect(run.output).not.toContain('\\n');
  expect(run.output.split('\n').some((line) => line.trim().startsWith(file))).toBe(true);
}

describe('controller state files (corral controller serve as a process)', () => {
  let dir: string;
  let state: string;
  let backup: string;
  let token: string;
  let serving: ChildProcess | undefined;
  let servingOutput: () => string = () => '';

  /** Starts serve and waits for its endpoints; returns the admin URL. */
  async function serve(extra: string[] = []): Promise<{ admin: string; output: () => string }> {
    const child = spawn(
      process.execPath,
      [
        join(ROOT, 'bin', 'corral.js'),
        'controller',
        'serve',
        '--state-dir',
        state,
        '--admin-listen',
        '127.0.0.1:0',
        '--worker-listen',
        '127.0.0.1:0',
        '--log-level',
        'warn',
        ...extra,
      ],
      { stdio: ['ignore', 'ignore', 'pipe'] },
    );
    serving = child;
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    servingOutput = () => stderr;
    const endpoints = await waitFor(
      'controller serve up',
      async () => {
        if (child.exitCode !== null) throw new Error(`serve exited ${child.exitCode}: ${stderr}`);
        return readEndpointsFile(state).catch(() => undefined);
      },
      CASE_TIMEOUT_MS,
    ).catch(async (e: unknown) => {
      await kill(child); // so it cannot write into the next case's state dir
      throw new Error(`${e instanceof Error ? e.message : String(e)}; its stderr: ${stderr}`);
    });
    return { admin: endpoints.admin ?? '', output: () => stderr };
  }

  async function stop(): Promise<void> {
    const child = serving;
    serving = undefined;
    if (!child || child.exitCode !== null) return;
    child.kill('SIGTERM');
    const [code, signal] = (await once(child, 'exit')) as [number | null, NodeJS.Signals | null];
    expect({ code, signal }, servingOutput()).toEqual({ code: 0, signal: null });
  }

  async function hosts(admin: string, bearer: string): Promise<{ status: number; names: string[] }> {
    const res = await request(`${admin}/v1/hosts`, { headers: { authorization: `Bearer ${bearer}` } });
    const body = (await res.body.json()) as { hosts?: { name: string }[] };
    return { status: res.statusCode, names: (body.hosts ?? []).map((h) => h.name).sort() };
  }

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'corral-damage-ctl-'));
    state = join(dir, 'controller');
    backup = join(dir, 'backup');
  });
  afterAll(async () => {
    if (serving && serving.exitCode === null) serving.kill('SIGKILL');
    await rm(dir, { recursive: true, force: true });
  });

  it('first start is unaffected: init, serve, enroll, and a backup of the whole state dir', async () => {
    const init = await corral([
      'controller',
      'init',
      '--state-dir',
      state,
      '--address',
      '127.0.0.1',
      '--json',
    ]);
    expect(init.code, init.output).toBe(0);
    expect((JSON.parse(init.output) as { created: string[] }).created).toContain('database');
    token = (await readFile(join(state, 'admin-token'), 'utf8')).trim();
    const { admin } = await serve();
    expect(await hosts(admin, token)).toEqual({ status: 200, names: [] });
    const enrolled = await corral([
      'controller',
      'enroll',
      '--state-dir',
      state,
      '--name',
      'web-1',
      '--address',
      '127.0.0.1',
      '--out-dir',
      join(dir, 'bundle-web-1'),
      '--json',
    ]);
    expect(enrolled.code, enrolled.output).toBe(0);
    expect(await hosts(admin, token)).toEqual({ status: 200, names: ['web-1'] });
    await stop();
    // A fleet database of a few MB, so a page in its middle is table data, not the header.
    const db = new sqlite3.Database(join(state, 'corral.db'));
    const rows = Array.from({ length: 4000 }, (_, i) => `('filler-${i}', '${'x'.repeat(900)}${i}')`).join(
      ',',
    );
    await exec(db, `INSERT INTO settings (key, value) VALUES ${rows}`);
    await new Promise<void>((resolve, reject) => db.close((e) => (e ? reject(e) : resolve())));
    await restore(state, backup); // the operator's backup, taken while the controller was stopped
    const again = await serve();
    expect(await hosts(again.admin, token)).toEqual({ status: 200, names: ['web-1'] });
    await stop();
  }, 240_000);

  const cases: { name: string; file: string; damage: (path: string) => Promise<void> }[] = [
    { name: 'the database deleted after the first start', file: 'corral.db', damage: (p) => unlink(p) },
    { name: 'a zero-length database', file: 'corral.db', damage: (p) => truncate(p, 0) },
    {
      name: 'a page of garbage in the middle of the database',
      file: 'corral.db',
      damage: async (p) => {
        const pages = (await lstat(p)).size / 4096;
        expect(pages).toBeGreaterThan(500);
        await garbagePage(p, Math.floor(pages / 2), 4096);
      },
    },
    { name: 'the CA key deleted', file: 'ca/ca.key', damage: (p) => unlink(p) },
    { name: 'an empty admin token', file: 'admin-token', damage: (p) => truncate(p, 0) },
    {
      name: 'a truncated controller-client certificate',
      file: 'tls/controller-client.crt',
      damage: async (p) => writeFile(p, (await readFile(p, 'utf8')).slice(0, 200)),
    },
    {
      name: 'garbage in the state manifest',
      file: 'state-manifest.json',
      damage: (p) => writeFile(p, '{"ver'),
    },
  ];
  for (const c of cases) {
    it(`refuses ${c.name}, names ${c.file} and the way back, and changes nothing`, async () => {
      await restore(backup, state);
      const path = join(state, c.file);
      await c.damage(path);
      const before = await snapshot(state);
      const run = await corral([
        'controller',
        'serve',
        '--state-dir',
        state,
        '--admin-listen',
        '127.0.0.1:0',
        '--worker-listen',
        '127.0.0.1:0',
      ]);
      expectRefusal(run, path, 'controller');
      expect(await snapshot(state)).toEqual(before);
      // init, which would once have made a fresh database, refuses the same way.
      const init = await corral(['controller', 'init', '--state-dir', state]);
      expectRefusal(init, path, 'controller');
      expect(await snapshot(state)).toEqual(before);
    }, 240_000);
  }

  it('init --reinitialize replaces a damaged database, says what it destroyed, and serve starts', async () => {
    await restore(backup, state);
    const path = join(state, 'corral.db');
    const pages = (await lstat(path)).size / 4096;
    await garbagePage(path, Math.floor(pages / 2), 4096);
    const run = await corral(['controller', 'init', '--state-dir', state, '--reinitialize']);
    expect(run.code, run.output).toBe(0);
    expect(run.output).toContain(`${path} (fails its integrity check`);
    expect(run.output).toMatch(new RegExp(`moved to ${path}\\.damaged-\\d{8}T\\d{6}Z`));
    expect(run.output).toContain('destroyed:');
    expect(run.output).toContain('the fleet database: every host and its pins');
    const entries = await readdir(state);
    expect(entries.some((e) => /^corral\.db\.damaged-/.test(e))).toBe(true);
    const { admin } = await serve();
    // The same CA and admin token; the fleet it destroyed is gone.
    expect(await hosts(admin, token)).toEqual({ status: 200, names: [] });
    await stop();
  }, 240_000);

  it('serve --reinitialize replaces a deleted admin token, revoking the old one, and serves', async () => {
    await restore(backup, state);
    await unlink(join(state, 'admin-token'));
    const { admin, output } = await serve(['--reinitialize']);
    await waitFor('the reinitialize report', () => output().includes('and destroyed:'));
    expect(output()).toContain(`${join(state, 'admin-token')} (is missing)`);
    expect(output()).toContain('the initial admin token (it is revoked and a new one written)');
    const fresh = (await readFile(join(state, 'admin-token'), 'utf8')).trim();
    expect(fresh).not.toBe(token);
    expect(await hosts(admin, fresh)).toEqual({ status: 200, names: ['web-1'] });
    expect((await hosts(admin, token)).status).toBe(401);
    await stop();
  }, 240_000);

  it('restoring the backup brings the fleet back', async () => {
    await restore(backup, state);
    const { admin } = await serve();
    expect(await hosts(admin, token)).toEqual({ status: 200, names: ['web-1'] });
    await stop();
  }, 240_000);
});

describe('agent state files (corral agent serve as a process)', () => {
  let pki: TestPki;
  let worker: TestWorker;
  let standIn: Awaited<ReturnType<typeof startControllerStandIn>>;
  let backup: string;
  let running: ChildProcess | undefined;

  const serveArgs = (extra: string[] = []) => [
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
    '100ms',
    '--log-level',
    'warn',
    ...extra,
  ];

  /** Starts the agent and waits for its (new) address. */
  async function serve(extra: string[] = []) {
    const previous = (await readEndpointsFile(worker.stateDir).catch(() => undefined))?.agent;
    const child = spawn(process.execPath, [join(ROOT, 'bin', 'corral.js'), ...serveArgs(extra)], {
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    running = child;
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const address = await waitFor(
      'agent up',
      async () => {
        if (child.exitCode !== null) throw new Error(`agent exited ${child.exitCode}: ${stderr}`);
        const lock = await readFile(join(worker.stateDir, 'run/agent.pid'), 'utf8').catch(() => '');
        if (!lock.includes(`"pid":${child.pid}`)) return undefined;
        const now = (await readEndpointsFile(worker.stateDir).catch(() => undefined))?.agent;
        return now !== previous ? now : undefined;
      },
      CASE_TIMEOUT_MS,
    ).catch(async (e: unknown) => {
      await kill(child);
      throw new Error(`${e instanceof Error ? e.message : String(e)}; its stderr: ${stderr}`);
    });
    const c = agentCaller(address, pki.controllerClient, worker.agentFingerprint);
    return { c, output: () => stderr };
  }

  async function stop(): Promise<void> {
    const child = running;
    running = undefined;
    if (!child || child.exitCode !== null) return;
    child.kill('SIGTERM');
    const [code] = (await once(child, 'exit')) as [number | null];
    expect(code).toBe(0);
  }

  /** Leaders started by this agent instance for `service` (their environment says so). */
  async function leadersOf(service: string): Promise<number[]> {
    const instance = agentInstance(worker.stateDir);
    const out: number[] = [];
    for (const entry of await readdir('/proc')) {
      if (!/^\d+$/.test(entry)) continue;
      const stat = await readFile(`/proc/${entry}/stat`, 'utf8').catch(() => '');
      const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      if (rest[0] === undefined || rest[0] === 'Z' || Number(rest[2]) !== Number(entry)) continue;
      const env = (await readFile(`/proc/${entry}/environ`, 'utf8').catch(() => '')).split('\0');
      if (env.includes(`CORRAL_AGENT_INSTANCE=${instance}`) && env.includes(`CORRAL_SERVICE=${service}`)) {
        out.push(Number(entry));
      }
    }
    return out;
  }

  beforeAll(async () => {
    pki = await makePki();
    standIn = await startControllerStandIn(pki, { intervalMs: 500 });
    worker = await makeWorker(pki, standIn.address, { hostId: 'damage-1' });
    backup = `${worker.stateDir}-backup`;
  });
  afterAll(async () => {
    if (running && running.exitCode === null) running.kill('SIGKILL');
    await killServices(worker.stateDir);
    for (const name of ['da', 'db']) for (const pid of await leadersOf(name)) process.kill(-pid, 'SIGKILL');
    await standIn.close();
    await rm(worker.stateDir, { recursive: true, force: true });
    await rm(backup, { recursive: true, force: true });
  });

  it('first start is unaffected: apply, output shipped, manifest of the state files, and a backup', async () => {
    const { c } = await serve();
    // Silent after one line, so the state dir holds still while the agent is down.
    const services = ['da', 'db'].map((n) => sh(n, `echo ${n}-started; exec sleep 600`));
    expect((await c.call('POST', '/v1/apply', { generation: 1, services })).status).toBe(202);
    await waitFor('both running', async () => {
      const st = (await c.call<AgentStatus>('GET', '/v1/status')).body;
      return st.services.filter((s) => s.state === 'running').length === 2;
    });
    await waitFor('output shipped', async () =>
      (await readFile(join(worker.stateDir, 'logs/worker.log'), 'utf8').catch(() => '')).includes(
        'db-started',
      ),
    );
    await waitFor('offsets listed', async () => {
      const m = JSON.parse(await readFile(join(worker.stateDir, 'state-manifest.json'), 'utf8')) as {
        files: string[];
      };
      return m.files.includes('services/db/log-offsets.json');
    });
    const manifest = JSON.parse(await readFile(join(worker.stateDir, 'state-manifest.json'), 'utf8')) as {
      files: string[];
    };
    expect(manifest.files).toEqual([
      'agent-state.json',
      'outbox.json',
      'services/da/log-offsets.json',
      'services/da/state.json',
      'services/db/log-offsets.json',
      'services/db/state.json',
    ]);
    await c.close();
    await stop();
    await restore(worker.stateDir, backup);
  }, 240_000);

  const cases: { name: string; file: string; damage: (path: string) => Promise<void> }[] = [
    {
      name: 'a truncated desired state',
      file: 'agent-state.json',
      damage: async (p) => writeFile(p, (await readFile(p, 'utf8')).slice(0, 40)),
    },
    { name: 'a deleted desired state', file: 'agent-state.json', damage: (p) => unlink(p) },
    {
      name: 'garbage in the event outbox',
      file: 'outbox.json',
      damage: (p) => writeFile(p, '\u0000\u0001garbage'),
    },
    { name: 'a zero-length service record', file: 'services/da/state.json', damage: (p) => truncate(p, 0) },
    { name: 'a deleted service record', file: 'services/db/state.json', damage: (p) => unlink(p) },
    {
      name: 'log offsets of the wrong shape',
      file: 'services/db/log-offsets.json',
      damage: (p) => writeFile(p, '{"stdout":{"ino":1,"offset":-5}}\n'),
    },
  ];
  for (const c of cases) {
    it(`refuses ${c.name}, names ${c.file} and the way back, and changes nothing`, async () => {
      await restore(backup, worker.stateDir);
      const path = join(worker.stateDir, c.file);
      await c.damage(path);
      const before = await snapshot(worker.stateDir);
      const run = await corral(serveArgs());
      expectRefusal(run, path, 'agent');
      expect(await snapshot(worker.stateDir)).toEqual(before);
      // The services were left alone: still one process each.
      expect((await leadersOf('da')).length).toBe(1);
      expect((await leadersOf('db')).length).toBe(1);
    }, 240_000);
  }

  it('--reinitialize replaces a damaged service record, says what it destroyed, and runs one process', async () => {
    await restore(backup, worker.stateDir);
    const path = join(worker.stateDir, 'services/da/state.json');
    await writeFile(path, '{"version":1,"spec":');
    const old = await leadersOf('da');
    const { c, output } = await serve(['--reinitialize']);
    try {
      // The report goes to stderr once the agent is up, just after it writes its address.
      await waitFor('the reinitialize report', () => output().includes('and destroyed:'));
      expect(output()).toContain(`${path} (is damaged`);
      expect(output()).toMatch(/moved to .*services\/da\/state\.json\.damaged-\d{8}T\d{6}Z/);
      expect(output()).toContain('the record of service da');
      const st = await waitFor('da running again', async () => {
        const s = (await c.call<AgentStatus>('GET', '/v1/status')).body;
        const da = s.services.find((x) => x.name === 'da');
        return da?.state === 'running' && da.pid !== null && !old.includes(da.pid) ? da : undefined;
      });
      await waitFor('the old da process stopped', async () => (await leadersOf('da')).length === 1);
      expect(await leadersOf('da')).toEqual([st.pid]);
      expect((await leadersOf('db')).length).toBe(1);
    } finally {
      await c.close();
      await stop();
    }
  }, 240_000);

  it('restoring the backup brings the services back as they were', async () => {
    await restore(backup, worker.stateDir);
    const before = [...(await leadersOf('db'))];
    const { c } = await serve();
    try {
      const st = await waitFor('both running', async () => {
        const s = (await c.call<AgentStatus>('GET', '/v1/status')).body;
        return s.services.filter((x) => x.state === 'running').length === 2 ? s : undefined;
      });
      expect(st.generation).toBe(1);
      expect(st.services.find((s) => s.name === 'db')?.pid).toBe(before[0]);
    } finally {
      await c.close();
      await stop();
    }
  }, 240_000);
});

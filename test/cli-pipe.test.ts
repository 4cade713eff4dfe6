import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { initControllerState, loadControllerIdentity, openDatabase } from '../controller/index.js';
import { readEndpointsFile } from '../kit/endpoints-file.js';
import type { HostView } from '../protocol/host.js';
import { ROOT } from './agent-fixture.js';
import { waitFor } from './controller-fixture.js';

/**
 * Output of the built CLI through a real pipe (`|` in bash) to a reader that starts late and
 * reads slowly: the bytes that arrive must be the whole output, and the exit status the
 * command's. Before the fix the CLI exited with the pipe's 64 KiB written and status 0.
 */
const HOSTS = 5000;
const MIB = 1024 * 1024;
const execFileAsync = promisify(execFile);

/** Waits half a second, then reads 4 KiB at a time with a pause after each read. */
const SLOW_READER = `
const fs = require('node:fs');
const pause = (ms) => Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
pause(500);
const buf = Buffer.alloc(4096);
for (let reads = 0; ; reads++) {
  let n;
  try { n = fs.readSync(0, buf, 0, buf.length, null); }
  catch (e) { if (e.code === 'EAGAIN') { pause(5); continue; } throw e; }
  if (n === 0) break;
  fs.writeSync(1, buf.subarray(0, n));
  if (reads % 4 === 0) pause(1);
}
`;

let dir: string;
let state: string;
let serve: ChildProcess;

/** `corral ARGS | slow reader > OUT` in bash; returns corral's own exit status and what arrived. */
async function throughSlowPipe(args: string[]): Promise<{ code: number; bytes: Buffer; stderr: string }> {
  const out = join(dir, `out-${Math.random().toString(36).slice(2)}`);
  const script = `"$NODE" "$CORRAL" "$@" | "$NODE" -e "$READER" > "$OUT"; echo "\${PIPESTATUS[0]}"`;
  const { stdout, stderr } = await execFileAsync('bash', ['-c', script, 'pipe', ...args], {
    env: {
      ...process.env,
      NODE: process.execPath,
      CORRAL: join(ROOT, 'bin', 'corral.js'),
      READER: SLOW_READER,
      OUT: out,
    },
    maxBuffer: 16 * MIB,
  });
  return { code: Number(stdout.trim()), bytes: await readFile(out), stderr };
}

/** The same command with stdout to a file (written synchronously by Node: the reference). */
async function toFile(args: string[]): Promise<{ code: number; bytes: Buffer }> {
  const out = join(dir, `ref-${Math.random().toString(36).slice(2)}`);
  const script = `"$NODE" "$CORRAL" "$@" > "$OUT"; echo "$?"`;
  const { stdout } = await execFileAsync('bash', ['-c', script, 'file', ...args], {
    env: { ...process.env, NODE: process.execPath, CORRAL: join(ROOT, 'bin', 'corral.js'), OUT: out },
  });
  return { code: Number(stdout.trim()), bytes: await readFile(out) };
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'corral-pipe-'));
  state = join(dir, 'controller');
  await initControllerState({ stateDir: state });
  // Many hosts straight into the real database (enrolling 5000 through the API would mint
  // 10,000 certificates); they have no pins, so `check` reports each one as not enrolled.
  const db = await openDatabase((await loadControllerIdentity(state)).paths.database);
  const enrolledAt = new Date().toISOString();
  for (let batch = 0; batch < HOSTS / 500; batch++) {
    await db
      .insertInto('hosts')
      .values(
        Array.from({ length: 500 }, (_, i) => {
          const n = batch * 500 + i;
          return {
            id: `h-pipe-${String(n).padStart(5, '0')}`,
            name: `host-${String(n).padStart(5, '0')}`,
            address: `10.${(n >> 16) & 255}.${(n >> 8) & 255}.${n & 255}`,
            agent_port: 8765,
            updater_port: 8766,
            sans: '[]',
            labels: JSON.stringify({ rack: `r${n % 40}`, tier: n % 2 ? 'web' : 'db' }),
            enrolled_at: enrolledAt,
            enrolled_via: 'bundle',
            last_seen: null,
            agent_version: null,
            generation: 0,
            metrics: null,
            decommissioned_at: null,
          };
        }),
      )
      .execute();
  }
  await db.destroy();
  serve = spawn(
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
    ],
    { stdio: 'ignore' },
  );
  await waitFor(async () => {
    if (serve.exitCode !== null) throw new Error('controller serve exited');
    return (await readEndpointsFile(state).catch(() => undefined)) !== undefined;
  }, 30_000);
}, 120_000);

afterAll(async () => {
  if (serve.exitCode === null && serve.signalCode === null) {
    serve.kill('SIGTERM');
    await once(serve, 'exit');
  }
  await rm(dir, { recursive: true, force: true });
});

describe('CLI output through a slow pipe', () => {
  it('`controller hosts --json` arrives whole (over 1 MiB), parses, and exits 0', async () => {
    const args = ['controller', 'hosts', '--json', '--state-dir', state];
    const piped = await throughSlowPipe(args);
    const reference = await toFile(args);
    expect(reference.code).toBe(0);
    expect(reference.bytes.length).toBeGreaterThan(MIB);
    expect(piped.stderr).toBe('');
    expect(piped.code).toBe(0);
    expect(piped.bytes.length).toBe(reference.bytes.length);
    expect(piped.bytes.equals(reference.bytes)).toBe(true);
    const hosts = JSON.parse(piped.bytes.toString('utf8')) as HostView[];
    expect(hosts).toHaveLength(HOSTS);
    expect(hosts.at(-1)?.name).toBe(`host-${String(HOSTS - 1).padStart(5, '0')}`);
  }, 120_000);

  it('the table form arrives whole too, ending with the last host', async () => {
    const piped = await throughSlowPipe(['controller', 'hosts', '--state-dir', state]);
    expect(piped.code).toBe(0);
    const lines = piped.bytes.toString('utf8').split('\n');
    expect(lines.at(-1)).toBe('');
    expect(lines).toHaveLength(HOSTS + 2); // header, one line per host, the final newline
    expect(lines.at(-2)).toMatch(/^host-04999 /);
  }, 120_000);

  it('a failing command with a large output keeps both: every byte and exit 1', async () => {
    const args = ['controller', 'check', '--json', '--state-dir', state];
    const piped = await throughSlowPipe(args);
    expect(piped.code).toBe(1);
    expect(piped.stderr).toContain(`${HOSTS} of ${HOSTS} hosts did not answer`);
    expect(piped.bytes.length).toBeGreaterThan(MIB);
    const results = JSON.parse(piped.bytes.toString('utf8')) as { error: { code: string } }[];
    expect(results).toHaveLength(HOSTS);
    expect(new Set(results.map((r) => r.error.code))).toEqual(new Set(['CORRAL_ERR_NOT_ENROLLED']));
  }, 120_000);

  it('a reader that stops early (`| head -c 100`) ends the command quietly with its own status', async () => {
    const script = `"$NODE" "$CORRAL" controller hosts --json --state-dir "$STATE" 2>"$ERR" | head -c 100 >/dev/null; echo "\${PIPESTATUS[0]}"`;
    const errFile = join(dir, 'head-stderr');
    const { stdout } = await execFileAsync('bash', ['-c', script], {
      env: {
        ...process.env,
        NODE: process.execPath,
        CORRAL: join(ROOT, 'bin', 'corral.js'),
        STATE: state,
        ERR: errFile,
      },
    });
    expect(Number(stdout.trim())).toBe(0);
    expect(await readFile(errFile, 'utf8')).toBe('');
  }, 120_000);
});

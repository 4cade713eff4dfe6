import { execFile, spawn } from 'node:child_process';
import { once } from 'node:events';
import { access, mkdtemp, open, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { TokenCreateResponse } from '../protocol/enrollment.js';
import { ROOT } from './agent-fixture.js';
import { corral, startController, waitFor, type TestController } from './controller-fixture.js';

/**
 * `agent join` used to take the token on argv only, where every user of the machine reads it
 * in `ps` (/proc/PID/cmdline). Now `--token-file FILE` and `--token-file -` (stdin) give it
 * without the command line. The join process is the built CLI; while it waits for its token
 * (on a FIFO, or on stdin) its /proc/PID/cmdline is read and must not hold the token.
 */
const execFileAsync = promisify(execFile);
let t: TestController;
let work: string;
let n = 0;

beforeAll(async () => {
  t = await startController();
  work = await mkdtemp(join(tmpdir(), 'corral-tokfile-'));
});
afterAll(async () => {
  await t.close();
  await rm(work, { recursive: true, force: true });
});

async function newToken(name: string): Promise<TokenCreateResponse> {
  const res = await t.admin<TokenCreateResponse>('POST', '/v1/tokens', { name });
  expect(res.status).toBe(200);
  return res.body;
}

function joinArgs(tok: TokenCreateResponse, stateDir: string, tokenArgs: string[]): string[] {
  return [
    'agent',
    'join',
    '--controller',
    tok.controller,
    '--ca-pin',
    tok.caPin,
    '--state-dir',
    stateDir,
    ...tokenArgs,
    '--json',
  ];
}

/** The argv the kernel shows for `pid` to every user (what `ps` prints). */
async function cmdline(pid: number): Promise<string> {
  return (await readFile(`/proc/${pid}/cmdline`, 'utf8')).split('\0').join(' ');
}

/** Spawns `agent join` and waits until it is the CLI waiting for its token; returns its argv as ps sees it. */
async function spawnWaiting(args: string[]) {
  const child = spawn(process.execPath, [join(ROOT, 'bin', 'corral.js'), ...args], {
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const exited = once(child, 'exit') as Promise<[number | null]>;
  const pid = child.pid!;
  let seen = '';
  await waitFor(async () => {
    seen = await cmdline(pid);
    return seen.includes('agent join');
  });
  return { child, exited, seen, output: () => ({ stdout, stderr }) };
}

const hasBundle = (stateDir: string): Promise<boolean> =>
  access(join(stateDir, 'bundle', 'manifest.json')).then(
    () => true,
    () => false,
  );

describe('agent join --token-file', () => {
  it('reads the token from a file named on the command line (a FIFO here, so it can be watched waiting)', async () => {
    const tok = await newToken('from-fifo');
    const fifo = join(work, 'token.fifo');
    await execFileAsync('mkfifo', ['-m', '0600', fifo]);
    const stateDir = join(work, `w${n++}`);
    const p = await spawnWaiting(joinArgs(tok, stateDir, ['--token-file', fifo]));
    expect(p.seen).toContain(`--token-file ${fifo}`);
    expect(p.seen).not.toContain(tok.token);
    expect(p.child.exitCode).toBeNull(); // blocked on the FIFO: it has not read the token yet
    const writer = await open(fifo, 'w');
    await writer.write(`${tok.token}\n`);
    await writer.close();
    const [code] = await p.exited;
    expect([code, p.output().stderr]).toEqual([0, '']);
    expect(JSON.parse(p.output().stdout)).toMatchObject({ hostName: 'from-fifo' });
    expect(await hasBundle(stateDir)).toBe(true);
  }, 120_000);

  it('reads the token from stdin with `--token-file -`', async () => {
    const tok = await newToken('from-stdin');
    const stateDir = join(work, `w${n++}`);
    const p = await spawnWaiting(joinArgs(tok, stateDir, ['--token-file', '-']));
    expect(p.seen).not.toContain(tok.token);
    expect(p.child.exitCode).toBeNull(); // waiting on stdin
    expect(await cmdline(p.child.pid!)).not.toContain(tok.token);
    p.child.stdin.end(`${tok.token}\n`);
    const [code] = await p.exited;
    expect([code, p.output().stderr]).toEqual([0, '']);
    expect(JSON.parse(p.output().stdout)).toMatchObject({ hostName: 'from-stdin' });
    expect(await hasBundle(stateDir)).toBe(true);
  }, 120_000);

  it('reads a plain 0600 file quietly, and warns (still joining) when the file is readable by others', async () => {
    const quiet = await newToken('from-file');
    const file = join(work, 'quiet.token');
    await writeFile(file, `  ${quiet.token}  \n# anything after the first line is ignored\n`, {
      mode: 0o600,
    });
    const ok = await corral(joinArgs(quiet, join(work, `w${n++}`), ['--token-file', file]));
    expect([ok.code, ok.stderr]).toEqual([0, '']);

    const loud = await newToken('from-open-file');
    const open644 = join(work, 'open.token');
    await writeFile(open644, loud.token, { mode: 0o644 });
    const warned = await corral(joinArgs(loud, join(work, `w${n++}`), ['--token-file', open644]));
    expect(warned.code).toBe(0);
    expect(warned.stderr).toContain(`warning: ${open644} can be read by other users`);
  }, 120_000);

  it('is a usage error (exit 2) to give no token, both forms, an empty or a missing file', async () => {
    const tok = await newToken('usage');
    const empty = join(work, 'empty.token');
    await writeFile(empty, '\n', { mode: 0o600 });
    const cases: [string[], string][] = [
      [[], 'exactly one of --token-file'],
      [['--token', tok.token, '--token-file', empty], 'exactly one of --token-file'],
      [['--token-file', empty], `${empty} holds no token`],
      [['--token-file', join(work, 'missing.token')], 'cannot read'],
      [['--token-file', work], 'is a directory'],
    ];
    for (const [tokenArgs, message] of cases) {
      const stateDir = join(work, `w${n++}`);
      const res = await corral(joinArgs(tok, stateDir, tokenArgs));
      expect([res.code, tokenArgs]).toEqual([2, tokenArgs]);
      expect(res.stderr).toContain(message);
      expect(await hasBundle(stateDir)).toBe(false);
    }
    // None of that spent the token: it still joins.
    const file = join(work, 'usage.token');
    await writeFile(file, tok.token, { mode: 0o600 });
    expect((await corral(joinArgs(tok, join(work, `w${n++}`), ['--token-file', file]))).code).toBe(0);
  }, 180_000);
});

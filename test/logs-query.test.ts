import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { appendFile, mkdir, mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadBundle } from '../pki/index.js';
import { readEndpointsFile } from '../kit/endpoints-file.js';
import type { LogLine, LogsPage } from '../protocol/admin-logs.js';
import { corral, waitFor } from './controller-fixture.js';

/**
 * `corral controller logs` and `GET /v1/logs` against a real `controller serve` (ingest files
 * rotating at 1 MiB) with two enrolled workers whose real forwarders ship their logs: a page
 * by host name or id and merged across hosts, service/grep/since/until filters, escape bytes
 * shown escaped, limits refused with their code, and `-f` following new lines across a
 * rotation of the ingest file.
 */
const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const BIN = join(ROOT, 'bin', 'corral.js');
let dir: string;
let controllerDir: string;
const children: ChildProcess[] = [];
const hosts: Record<string, { id: string; logFile: string }> = {};

function start(args: string[], stdout: 'pipe' | 'ignore' = 'ignore'): ChildProcess {
  const child = spawn(process.execPath, [BIN, ...args], { stdio: ['ignore', stdout, 'pipe'] });
  children.push(child);
  return child;
}

/** One RFC 5424 line as a worker's file holds it. */
const line = (ts: string, app: string, msg: string): string =>
  `<134>1 ${ts} claimed-host ${app} 42 - - ${msg}\n`;

async function logs(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return corral(['controller', 'logs', ...args, '--state-dir', controllerDir]);
}

async function page(args: string[]): Promise<LogLine[]> {
  const r = await logs([...args, '--json']);
  expect(r.code, r.stderr).toBe(0);
  return (JSON.parse(r.stdout) as LogsPage).lines;
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'corral-logs-query-'));
  controllerDir = join(dir, 'controller');
  expect(
    (await corral(['controller', 'init', '--state-dir', controllerDir, '--address', '127.0.0.1'])).code,
  ).toBe(0);
  start([
    'controller',
    'serve',
    '--state-dir',
    controllerDir,
    '--admin-listen',
    '127.0.0.1:0',
    '--worker-listen',
    '127.0.0.1:0',
    '--logs-max-file-mb',
    '1',
    '--log-level',
    'warn',
  ]);
  await waitFor(
    async () => (await readEndpointsFile(controllerDir).catch(() => undefined))?.syslog !== undefined,
    30_000,
  );
  for (const name of ['web-a', 'web-b']) {
    const worker = join(dir, name);
    const enrolled = await corral([
      'controller',
      'enroll',
      '--state-dir',
      controllerDir,
      '--name',
      name,
      '--address',
      '127.0.0.1',
      '--out-dir',
      join(worker, 'bundle'),
    ]);
    expect(enrolled.code, enrolled.stderr).toBe(0);
    const logFile = join(worker, 'logs', 'worker.log');
    await mkdir(dirname(logFile), { recursive: true });
    hosts[name] = { id: (await loadBundle(join(worker, 'bundle'))).manifest.hostId, logFile };
  }
  // Interleaved in time across the two hosts; one line carries an escape sequence.
  await appendFile(
    hosts['web-a']!.logFile,
    line('2026-01-01T00:00:01.000Z', 'app', 'a first') +
      line('2026-01-01T00:00:03.000Z', 'db', 'a second error') +
      line('2026-01-01T00:00:05.000Z', 'app', 'a third \u001b[31mred\u001b[0m'),
  );
  await appendFile(
    hosts['web-b']!.logFile,
    line('2026-01-01T00:00:02.000Z', 'app', 'b first') +
      line('2026-01-01T00:00:04.000Z', 'app', 'b second error'),
  );
  for (const name of ['web-a', 'web-b']) {
    start([
      'forwarder',
      'run',
      '--state-dir',
      join(dir, name),
      '--file',
      hosts[name]!.logFile,
      '--poll-interval',
      '50ms',
      // At warn, the forwarder's own lines (it follows the worker log) stay out of these pages.
      '--log-level',
      'warn',
    ]);
  }
  await waitFor(async () => (await page([])).length === 5, 60_000);
}, 120_000);

afterAll(async () => {
  for (const c of children) if (c.exitCode === null) c.kill('SIGKILL');
  await Promise.all(children.filter((c) => c.exitCode === null).map((c) => once(c, 'exit')));
  await rm(dir, { recursive: true, force: true });
});

describe('controller logs: pages', () => {
  it('merges every host by timestamp, each line with its host and service; by name or id the same host', async () => {
    const all = await page([]);
    expect(all.map((l) => [l.host, l.service, l.message.slice(0, 8)])).toEqual([
      ['web-a', 'app', 'a first'],
      ['web-b', 'app', 'b first'],
      ['web-a', 'db', 'a second'],
      ['web-b', 'app', 'b second'],
      ['web-a', 'app', 'a third '],
    ]);
    expect(all[0]?.ts).toBe('2026-01-01T00:00:01.000Z');
    const byName = await page(['web-a']);
    expect(byName.map((l) => l.message.slice(0, 7))).toEqual(['a first', 'a secon', 'a third']);
    expect(await page([hosts['web-a']!.id])).toEqual(byName);
    const text = await logs([]);
    expect(text.stdout.split('\n')[0]).toBe('2026-01-01T00:00:01.000Z web-a app: a first');
    expect(await page(['--limit', '2'])).toEqual(all.slice(-2));
  });

  it('filters by service, pattern and time', async () => {
    expect((await page(['web-a', '--service', 'db'])).map((l) => l.message)).toEqual(['a second error']);
    expect((await page(['--grep', 'error$'])).map((l) => l.host)).toEqual(['web-a', 'web-b']);
    const window = await page(['--since', '2026-01-01T00:00:02Z', '--until', '2026-01-01T00:00:04Z']);
    expect(window.map((l) => l.message)).toEqual(['b first', 'a second error', 'b second error']);
  });

  it('shows escape bytes escaped, never raw', async () => {
    const r = await logs(['web-a', '--grep', 'third']);
    expect(r.code).toBe(0);
    expect(r.stdout).not.toContain('\u001b');
    expect(r.stdout).toMatch(/a third (#033|\\x1b)\[31mred/);
  });

  it('refuses a limit over the maximum, an unsafe or overlong pattern with CORRAL_ERR_LOG_QUERY_REFUSED; an unknown host is not found', async () => {
    for (const args of [
      ['--limit', '100000'],
      ['--grep', '(a+)+$'],
      ['--grep', 'x'.repeat(300)],
      ['--grep', '(a)\\1'],
    ]) {
      const r = await logs(args);
      expect(r.code, args.join(' ')).not.toBe(0);
      expect(r.stderr, args.join(' ')).toContain('CORRAL_ERR_LOG_QUERY_REFUSED');
    }
    const r = await logs(['nobody']);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain('CORRAL_ERR_NOT_FOUND');
  });
});

describe('controller logs -f', () => {
  it("follows a real forwarder's new lines, and goes on across a rotation of the ingest file", async () => {
    const follower = start(
      ['controller', 'logs', 'web-b', '-f', '--json', '--state-dir', controllerDir],
      'pipe',
    );
    let out = '';
    follower.stdout!.on('data', (b: Buffer) => (out += b.toString('utf8')));
    const seen = (text: string): boolean => out.includes(text);
    await waitFor(async () => seen('b second error'), 30_000);
    await appendFile(hosts['web-b']!.logFile, line('2026-01-01T00:01:00.000Z', 'app', 'b live one'));
    await waitFor(async () => seen('b live one'), 30_000);
    // Past 1 MiB: the ingest file rotates; lines after it still arrive.
    const filler = Array.from({ length: 6000 }, (_, i) =>
      line('2026-01-01T00:02:00.000Z', 'bulk', `filler ${i} ${'x'.repeat(150)}`),
    ).join('');
    await appendFile(hosts['web-b']!.logFile, filler);
    const ingestDir = join(controllerDir, 'logs', 'hosts');
    const rotatedName = `web-b.${hosts['web-b']!.id}.000000.log`;
    await waitFor(async () => (await readdir(ingestDir)).includes(rotatedName), 60_000);
    await appendFile(hosts['web-b']!.logFile, line('2026-01-01T00:03:00.000Z', 'app', 'b after rotation'));
    await waitFor(async () => seen('b after rotation'), 30_000);
    const lines = out
      .split('\n')
      .filter(Boolean)
      .map((l) => JSON.parse(l) as LogLine);
    expect(lines.filter((l) => l.message.startsWith('filler ')).map((l) => l.message.split(' ')[1])).toEqual(
      Array.from({ length: 6000 }, (_, i) => String(i)),
    );
    expect(lines.every((l) => l.host === 'web-b')).toBe(true);
    expect(follower.exitCode).toBeNull();
  }, 120_000);
});

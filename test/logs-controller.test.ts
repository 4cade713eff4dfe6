import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { appendFile, mkdir, mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadBundle } from '../pki/index.js';
import { readEndpointsFile } from '../kit/endpoints-file.js';
import { corral, waitFor } from './controller-fixture.js';
import { logLine, sequencesIn } from './logs-fixtures.js';

/**
 * The syslog listener as part of `corral controller serve`: bundles name it, a worker's
 * forwarder (run through the CLI) ships its log home under the pinned host, and a
 * decommissioned host's forwarder is refused from then on.
 */
const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const BIN = join(ROOT, 'bin', 'corral.js');
let dir: string;
let controllerDir: string;

const children: ChildProcess[] = [];
/** The controller's log (pino JSON on its stdout), one parsed record per line. */
const controllerLog: Record<string, unknown>[] = [];

/** Runs `corral ARGS`; `stdout: 'pipe'` only for a child whose output the test reads. */
function start(args: string[], stdout: 'pipe' | 'ignore' = 'ignore'): ChildProcess {
  const child = spawn(process.execPath, [BIN, ...args], {
    stdio: ['ignore', stdout, 'pipe'],
    detached: false,
  });
  children.push(child);
  return child;
}

/** Refusals the controller's syslog listener logged for connections made with `fingerprint`. */
const refusalsOf = (fingerprint: string): Record<string, unknown>[] =>
  controllerLog.filter((r) => r.msg === 'syslog connection refused' && r.fingerprint === fingerprint);

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'corral-logs-ctl-'));
  controllerDir = join(dir, 'controller');
  const init = await corral(['controller', 'init', '--state-dir', controllerDir, '--address', '127.0.0.1']);
  expect(init.code).toBe(0);
  const controller = start(
    [
      'controller',
      'serve',
      '--state-dir',
      controllerDir,
      '--admin-listen',
      '127.0.0.1:0',
      '--worker-listen',
      '127.0.0.1:0',
      '--log-level',
      'warn',
    ],
    'pipe',
  );
  createInterface({ input: controller.stdout! }).on('line', (line) => {
    try {
      controllerLog.push(JSON.parse(line) as Record<string, unknown>);
    } catch (e: unknown) {
      if (!(e instanceof SyntaxError)) throw e; // a line that is not JSON is not a log record
    }
  });
  await waitFor(
    async () => (await readEndpointsFile(controllerDir).catch(() => undefined))?.syslog !== undefined,
    30_000,
  );
});

afterAll(async () => {
  for (const c of children) if (c.exitCode === null) c.kill('SIGKILL');
  await Promise.all(children.filter((c) => c.exitCode === null).map((c) => once(c, 'exit')));
  await rm(dir, { recursive: true, force: true });
});

describe('syslog listener inside controller serve', () => {
  it('is advertised in bundles and ingests a worker forwarder under its pinned host; told once decommissioned, it exits 0', async () => {
    const endpoints = await readEndpointsFile(controllerDir);
    expect(endpoints?.syslog).toMatch(/^127\.0\.0\.1:\d+$/);
    const worker = join(dir, 'worker');
    const enrolled = await corral([
      'controller',
      'enroll',
      '--state-dir',
      controllerDir,
      '--name',
      'logger-1',
      '--address',
      '127.0.0.1',
      '--out-dir',
      join(worker, 'bundle'),
      '--json',
    ]);
    expect(enrolled.code).toBe(0);
    const bundle = await loadBundle(join(worker, 'bundle'));
    expect(bundle.manifest.syslog).toBe(endpoints?.syslog);

    const logFile = join(worker, 'logs', 'worker.log');
    await mkdir(dirname(logFile), { recursive: true });
    // The message claims another HOSTNAME; provenance must come from the certificate.
    const lines = Array.from({ length: 200 }, (_, i) => `${logLine(i, 120, 'not-logger-1')}\n`).join('');
    await appendFile(logFile, lines);
    const forwarder = start(['forwarder', 'run', '--state-dir', worker, '--file', logFile], 'pipe');
    let forwarderOut = '';
    forwarder.stdout!.on('data', (b: Buffer) => (forwarderOut += b.toString('utf8')));
    const forwarderExit = once(forwarder, 'exit') as Promise<[number | null]>;
    const ingest = join(controllerDir, 'logs', 'hosts', `logger-1.${bundle.manifest.hostId}.log`);
    await waitFor(async () => (await sequencesIn(ingest).catch(() => [])).length >= 200, 60_000);
    expect(await sequencesIn(ingest)).toEqual(Array.from({ length: 200 }, (_, i) => i));
    const fingerprint = bundle.identities.agent!.fingerprint;
    expect(refusalsOf(fingerprint)).toEqual([]);

    const gone = await corral([
      'controller',
      'decommission',
      'logger-1',
      '--yes',
      '--state-dir',
      controllerDir,
    ]);
    expect(gone.code).toBe(0);
    const refusedBefore = refusalsOf(fingerprint).length;
    await appendFile(logFile, `${logLine(200, 120)}\n`);
    // The forwarder is told, on its next connection with the host's own certificate, that the
    // host is decommissioned: it exits 0 with one line instead of retrying forever.
    const [code] = await forwarderExit;
    expect(code).toBe(0);
    expect(forwarderOut.split('\n').filter((l) => l.includes('decommissioned'))).toHaveLength(1);
    // No refusal warnings in the controller's log for it, and the line never reached the ingest.
    expect(refusalsOf(fingerprint)).toHaveLength(refusedBefore);
    expect(await sequencesIn(ingest)).toHaveLength(200);
    // The forwarder follows the worker log, so its own lines went home too, under its name.
    const own = (await readFile(ingest, 'utf8')).split('\n').filter((l) => / corral-forwarder \d+ /.test(l));
    expect(own.some((l) => l.includes('forwarder started'))).toBe(true);
  }, 120_000);
});

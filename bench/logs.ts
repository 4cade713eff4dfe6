import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { once } from 'node:events';
import { createReadStream } from 'node:fs';
import { readFile, rm, stat } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import {
  makePki,
  startListener,
  tempDir,
  TestPinTable,
  workerStateDir,
  writeLines,
} from '../test/logs-fixtures.js';
import {
  findRsyslog,
  freePort,
  receiverConfig,
  senderConfig,
  startRsyslog,
  waitForPort,
  writeTlsFiles,
} from '../test/rsyslog-fixtures.js';
import { runSenders } from './logs-senders.js';
import { fmt } from './lib/stats.js';

/**
 * `npm run bench -- logs [--lines N]`: N (default 1,000,000) RFC 5424 lines of 200 bytes go
 * from a file to the receiver's file over mutual TLS. Lines/s and MB/s are over the transfer
 * (first byte received to last); the time from starting the sender, start-up included, is
 * shown beside it. Corral: `corral forwarder run` (its own process, corral
 * mode, acks after fsync) to the syslog listener. rsyslog, in the same run: imfile → omfwd
 * (gtls, octet-counted) → imtcp (gtls) → omfile, two private rsyslogd instances. Exactly once
 * is checked by comparing the received file with the source (same length and SHA-256: every
 * line once, in order).
 */
const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
const LINE_BYTES = 200;
const TIMEOUT_MS = 10 * 60_000;

interface Outcome {
  /** From starting the sender to the last byte received, in seconds. */
  readonly totalSeconds: number;
  /** From the first byte received to the last: the transfer itself, without process start-up. */
  readonly transferSeconds: number;
  readonly received: number;
  readonly exact: boolean;
  readonly note?: string | undefined;
  /** Peak resident memory of the sending process, when known. */
  readonly peakRss?: number | undefined;
}

interface Timing {
  readonly totalSeconds: number;
  readonly transferSeconds: number;
  readonly note?: string | undefined;
}

async function sha256(path: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

async function sizeOf(path: string): Promise<number> {
  return stat(path).then(
    (s) => s.size,
    () => 0,
  );
}

/** Waits until `path` reaches `bytes` (or stops growing for 30 s, or the timeout). */
async function timeUntil(path: string, bytes: number, startedAt: number): Promise<Timing> {
  let last = -1;
  let lastChange = performance.now();
  let firstByteAt: number | undefined;
  for (;;) {
    const size = await sizeOf(path);
    const now = performance.now();
    if (size > 0) firstByteAt ??= now;
    const timing = (note?: string): Timing => ({
      totalSeconds: (now - startedAt) / 1000,
      transferSeconds: (now - (firstByteAt ?? now)) / 1000,
      note,
    });
    if (size >= bytes) return timing();
    if (size !== last) {
      last = size;
      lastChange = now;
    }
    if (now - lastChange > 30_000) return timing('stalled');
    if (now - startedAt > TIMEOUT_MS) return timing('timed out');
    await sleep(5);
  }
}

/** What went wrong with the received lines: missing, repeated, or out of order. */
async function diagnose(path: string, lines: number): Promise<string> {
  const seen = new Uint8Array(lines);
  let repeated = 0;
  let outOfOrder = 0;
  let previous = -1;
  let rest = '';
  for await (const chunk of createReadStream(path, { encoding: 'latin1' })) {
    const parts = (rest + (chunk as string)).split('\n');
    rest = parts.pop() ?? '';
    for (const line of parts) {
      const at = line.indexOf(' seq=');
      const seq = at === -1 ? NaN : Number(line.slice(at + 5, at + 14));
      if (!Number.isInteger(seq) || seq < 0 || seq >= lines) continue;
      if (seen[seq]) repeated++;
      seen[seq] = 1;
      if (seq < previous) outOfOrder++;
      previous = seq;
    }
  }
  const missing = seen.reduce((n, v) => n + (v ? 0 : 1), 0);
  return `${missing} missing, ${repeated} repeated, ${outOfOrder} out of order`;
}

async function verify(
  source: string,
  received: string,
  sourceHash: string,
  lines: number,
  timing: Timing,
): Promise<Outcome> {
  const size = await sizeOf(received);
  const exact = size === (await sizeOf(source)) && (await sha256(received)) === sourceHash;
  return { ...timing, received: size, exact, ...(exact ? {} : { note: await diagnose(received, lines) }) };
}

/** Peak resident memory of a process (VmHWM), in bytes; Linux only. */
async function peakRssOf(pid: number | undefined): Promise<number | undefined> {
  if (pid === undefined) return undefined;
  const status = await readFile(`/proc/${pid}/status`, 'utf8').catch(() => '');
  const m = /^VmHWM:\s+(\d+) kB$/m.exec(status);
  return m ? Number(m[1]) * 1024 : undefined;
}

async function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = once(child, 'exit');
  child.kill('SIGTERM');
  await exited;
}

async function runCorral(dir: string, source: string, sourceHash: string, lines: number): Promise<Outcome> {
  const pki = await makePki();
  const host = await pki.host('web-1');
  const pins = new TestPinTable();
  pins.pin(host);
  const logDir = join(dir, 'corral-ingest');
  const { listener, port } = await startListener(pki, pins, logDir);
  const stateDir = await workerStateDir(pki, host, port);
  try {
    const startedAt = performance.now();
    const forwarder = spawn(
      process.execPath,
      [
        join(ROOT, 'bin', 'corral.js'),
        'forwarder',
        'run',
        '--state-dir',
        stateDir,
        '--file',
        source,
        '--log-level',
        'warn',
      ],
      { stdio: ['ignore', 'ignore', 'inherit'] },
    );
    const received = join(logDir, 'web-1.log');
    const timing = await timeUntil(received, await sizeOf(source), startedAt);
    const peakRss = await peakRssOf(forwarder.pid);
    await stopChild(forwarder);
    return { ...(await verify(source, received, sourceHash, lines, timing)), peakRss };
  } finally {
    await listener.close();
    await rm(stateDir, { recursive: true, force: true });
  }
}

async function runRsyslog(
  bin: string,
  dir: string,
  source: string,
  sourceHash: string,
  lines: number,
): Promise<Outcome> {
  const pki = await makePki();
  const host = await pki.host('web-1');
  const recvDir = join(dir, 'rsyslog-recv');
  const sendDir = join(dir, 'rsyslog-send');
  const port = await freePort();
  const received = join(recvDir, 'received.log');
  const receiver = await startRsyslog(
    bin,
    recvDir,
    receiverConfig(
      recvDir,
      await writeTlsFiles(join(recvDir, 'tls'), 'server', pki.controller),
      port,
      received,
    ),
  );
  try {
    await waitForPort(port);
    const tls = await writeTlsFiles(join(sendDir, 'tls'), 'agent', host);
    const startedAt = performance.now();
    const sender = await startRsyslog(bin, sendDir, senderConfig(sendDir, tls, source, port, 'localhost'));
    try {
      const timing = await timeUntil(received, await sizeOf(source), startedAt);
      return await verify(source, received, sourceHash, lines, timing);
    } finally {
      await sender.stop();
    }
  } finally {
    await receiver.stop();
  }
}

/** Lines per second over the transfer (first byte to last byte received). */
function rate(o: Outcome, lines: number, bytes: number): number {
  return (lines * (o.received / bytes)) / o.transferSeconds;
}

function describe(label: string, o: Outcome, lines: number, bytes: number): string {
  const mbps = o.received / o.transferSeconds / 1e6;
  const check = o.exact
    ? 'exactly once in order: yes'
    : `exactly once in order: NO (${o.received} of ${bytes} bytes${o.note ? `; ${o.note}` : ''})`;
  return [
    label.padEnd(28),
    `${fmt(rate(o, lines, bytes), 0).padStart(9)} lines/s`,
    `${fmt(mbps, 1).padStart(6)} MB/s`,
    `${fmt(o.transferSeconds, 2).padStart(6)} s`,
    `(${fmt(o.totalSeconds, 2)} s with start-up)`,
    check,
  ].join('  ');
}

function parseLines(args: string[]): number {
  const i = args.indexOf('--lines');
  if (i === -1) return 1_000_000;
  const n = Number(args[i + 1]);
  if (!Number.isInteger(n) || n < 1) throw new Error('--lines needs a positive integer');
  return n;
}

export async function run(args: string[]): Promise<void> {
  if (args.includes('--senders')) return runSenders(args);
  const lines = parseLines(args);
  const dir = await tempDir('bench-logs');
  try {
    const source = join(dir, 'app.log');
    await writeLines(source, 0, lines, LINE_BYTES);
    const bytes = await sizeOf(source);
    const sourceHash = await sha256(source);
    const rsyslog = await findRsyslog();
    const version = rsyslog.bin
      ? execFileSync(rsyslog.bin, ['-v'])
          .toString()
          .split('\n')[0]
          ?.replace(/\s*compiled with:\s*$/, '')
      : undefined;
    console.log(
      `logs: ${lines} lines of ${LINE_BYTES} bytes (${fmt(bytes / 1e6, 1)} MB) from a file to the receiver's file over mutual TLS`,
    );
    console.log(`node ${process.version}${version ? `, ${version.trim()}` : ''}`);
    console.log('');

    const corral = await runCorral(dir, source, sourceHash, lines);
    console.log(describe('corral (forwarder→listener)', corral, lines, bytes));
    if (corral.peakRss !== undefined) console.log(`  forwarder peak RSS: ${fmt(corral.peakRss / 1e6, 1)} MB`);
    if (!rsyslog.bin) {
      console.log(`rsyslog: not run (${rsyslog.skipReason})`);
      return;
    }
    const theirs = await runRsyslog(rsyslog.bin, dir, source, sourceHash, lines);
    console.log(describe('rsyslog (imfile→imtcp)', theirs, lines, bytes));
    console.log('');
    console.log(
      `ratio (corral/rsyslog, lines/s over the transfer): ${fmt(rate(corral, lines, bytes) / rate(theirs, lines, bytes), 2)}x`,
    );
    console.log(
      `ratio (corral/rsyslog, with start-up):             ${fmt(theirs.totalSeconds / corral.totalSeconds, 2)}x`,
    );
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

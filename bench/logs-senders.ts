import { spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { once } from 'node:events';
import { createReadStream, writeSync } from 'node:fs';
import { open, rm, stat, writeFile, type FileHandle } from 'node:fs/promises';
import { cpus, loadavg } from 'node:os';
import { join, resolve } from 'node:path';
import { createInterface, type Interface } from 'node:readline';
import { setTimeout as sleep } from 'node:timers/promises';
import pino from 'pino';
import type { SyslogListenerStats } from '../controller/syslog/index.js';
import {
  createForwarder,
  openPositionStore,
  type Forwarder,
  type PositionStore,
} from '../forwarder/index.js';
import { logLine, makePki, tempDir, type HostIdentity, type TestPki } from '../test/logs-fixtures.js';
import { processCpuMs, processRssBytes } from './lib/heartbeat-load.js';
import { ROOT } from './lib/controller-process.js';
import { fmt, median } from './lib/stats.js';

/**
 * `npm run bench -- logs --senders N [--rate R] [--seconds S] [--lines L] [--rounds K]`: the
 * syslog listener with many sending hosts, beside one sending host, in the same run.
 *
 * The listener runs alone in a child process (its CPU is its own); the senders are real
 * `createForwarder` instances (corral mode, default poll interval and window), one per host,
 * each with its own certificate, position database and source file, in this process. Two
 * phases per sender count:
 *  - *rate*: lines are appended to the sources at R lines/s in total (default 100,000), split
 *    evenly; after a warm-up, S seconds (default 10) are measured: lines/s ingested, the
 *    listener's fdatasync calls per second (its own count), and the listener's CPU in cores.
 *  - *backlog*: the forwarders are stopped and all started again at once; once every one is
 *    connected and sending (a line each landed), L lines (default 2,000,000, split evenly) are
 *    appended round-robin in BACKLOG_ROUNDS chunks per host; mid-transfer (from the first sample with 10% of
 *    the backlog in and every host's lines landing, so every sender is connected and sending,
 *    to 60% of the backlog, or until the first host is done) the aggregate lines/s and Jain's fairness index of the
 *    hosts' ingest rates ((Σx)² / (n·Σx²): 1 is a perfectly even share, 1/n one host alone),
 *    from the ingest files' sizes as a sampler process of their own reads them every 100 ms
 *    (lib/logs-sampler-child.ts; this process is too busy with the forwarders to say when a
 *    size was true; what its own loop saw is printed beside), and again from the first sample
 *    in which every host has landed lines to the first in which one is done.
 * After each phase every host's ingest file is compared with its source (length and SHA-256):
 * every line exactly once, in order. `--rounds K` repeats the whole run and prints medians.
 */
const LINE_BYTES = 200;
const WARMUP_MS = 3_000;
const TICK_MS = 100;
const SAMPLE_MS = 200;
const DRAIN_TIMEOUT_MS = 5 * 60_000;
const START_TIMEOUT_MS = 60_000;
/** The shortest fairness window that counts, in ms. */
const MIN_WINDOW_MS = 1_000;
/** The backlog is appended to the sources in this many round-robin chunks per host. */
const BACKLOG_ROUNDS = 10;

interface Options {
  readonly senders: number;
  readonly rate: number;
  readonly seconds: number;
  readonly lines: number;
  readonly rounds: number;
  /** Another build's dist/ whose listener runs beside this one, for a before/after in one run. */
  readonly baseline: string | undefined;
  /** Print the listener's counters every second of the backlog phase. */
  readonly timeline: boolean;
  /** Also run the ungrouped path (one host per commit, the listener's perHostCommits) beside it. */
  readonly ungrouped: boolean;
}

function numberArg(args: string[], name: string, fallback: number): number {
  const i = args.indexOf(name);
  if (i === -1) return fallback;
  const n = Number(args[i + 1]);
  if (!Number.isInteger(n) || n < 1) throw new RangeError(`${name} needs a positive integer`);
  return n;
}

export function sendersOptions(args: string[]): Options {
  return {
    senders: numberArg(args, '--senders', 200),
    rate: numberArg(args, '--rate', 100_000),
    seconds: numberArg(args, '--seconds', 10),
    lines: numberArg(args, '--lines', 2_000_000),
    rounds: numberArg(args, '--rounds', 1),
    baseline: args.includes('--baseline') ? args[args.indexOf('--baseline') + 1] : undefined,
    timeline: args.includes('--timeline'),
    ungrouped: !args.includes('--no-ungrouped'),
  };
}

/** The listener child: its pid, stats on request, and a clean stop. */
interface ListenerChild {
  readonly process: ChildProcess;
  readonly port: number;
  stats(): Promise<SyslogListenerStats>;
  stop(): Promise<void>;
}

async function startListenerChild(
  dist: string,
  pki: TestPki,
  hosts: readonly HostIdentity[],
  dir: string,
  logDir: string,
  perHostCommits: boolean,
): Promise<ListenerChild> {
  const config = join(dir, 'listener.json');
  await writeFile(
    config,
    JSON.stringify({
      tls: { caPem: pki.controller.caPem, certPem: pki.controller.certPem, keyPem: pki.controller.keyPem },
      logDir,
      pins: hosts.map((h) => ({ fingerprint: h.fingerprint, hostId: h.hostId, hostName: h.hostName })),
      perHostCommits,
    }),
    { mode: 0o600 },
  );
  const child = spawn(process.execPath, [join(dist, 'bench', 'lib', 'logs-listener-child.js'), config], {
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  const lines: Interface = createInterface({ input: child.stdout });
  const waiting: ((line: string) => void)[] = [];
  let port = 0;
  const listening = new Promise<void>((resolve, reject) => {
    child.once('exit', (code) => reject(new Error(`listener child exited ${code} before listening`)));
    lines.on('line', (line) => {
      const m = /^listening (\d+)$/.exec(line);
      if (m) {
        port = Number(m[1]);
        resolve();
      } else waiting.shift()?.(line);
    });
  });
  await listening;
  return {
    process: child,
    port,
    async stats() {
      const answer = new Promise<string>((resolve) => waiting.push(resolve));
      child.stdin.write('stats\n');
      return JSON.parse(await answer) as SyslogListenerStats;
    },
    async stop() {
      if (child.exitCode !== null) return;
      const exited = once(child, 'exit');
      child.stdin.end();
      const timer = setTimeout(() => child.kill('SIGKILL'), 30_000);
      await exited;
      clearTimeout(timer);
    },
  };
}

/** The ingest files' sizes over time, from a process of their own (logs-sampler-child.ts). */
interface Sampler {
  series(): Promise<{ at: number; sizes: number[] }[]>;
  stop(): Promise<void>;
}

async function startSampler(dir: string, paths: readonly string[]): Promise<Sampler> {
  const list = join(dir, 'sampled.json');
  await writeFile(list, JSON.stringify(paths));
  const child = spawn(process.execPath, [join(ROOT, 'dist', 'bench', 'lib', 'logs-sampler-child.js'), list], {
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  const lines: Interface = createInterface({ input: child.stdout });
  const waiting: ((line: string) => void)[] = [];
  await new Promise<void>((resolve, reject) => {
    child.once('exit', (code) => reject(new Error(`sampler child exited ${code} before sampling`)));
    lines.on('line', (line) => {
      if (line === 'sampling') resolve();
      else waiting.shift()?.(line);
    });
  });
  return {
    async series() {
      const answer = new Promise<string>((resolve) => waiting.push(resolve));
      child.stdin.write('series\n');
      return JSON.parse(await answer) as { at: number; sizes: number[] }[];
    },
    async stop() {
      if (child.exitCode !== null) return;
      const exited = once(child, 'exit');
      child.stdin.end();
      await exited;
    },
  };
}

/**
 * The fairness window in the sampler's series: it opens at the first sample taken after the
 * whole backlog was appended in which 10% of the backlog is in and every host has landed
 * backlog lines (every sender connected and sending,
 * so the forwarders' start-time spread is not counted as unfairness), and closes at the first
 * with 60% in, or with one host done if that comes first. Undefined when a host is done before
 * every host is under way.
 */
function sampledWindow(
  series: readonly { at: number; sizes: number[] }[],
  before: readonly number[],
  targets: readonly number[],
  backlogBytes: number,
  appendedEpoch: number,
): { from: { at: number; sizes: number[] }; to: { at: number; sizes: number[] }; note: string } | undefined {
  const got = (sizes: readonly number[]): number =>
    sizes.reduce((a, size, i) => a + size - (before[i] ?? 0), 0);
  const anyDone = (sizes: readonly number[]): boolean => sizes.some((size, i) => size >= (targets[i] ?? 0));
  const from = series.find(
    (x) =>
      x.at >= appendedEpoch &&
      got(x.sizes) >= backlogBytes * 0.1 &&
      allLanded(x.sizes, before) &&
      !anyDone(x.sizes),
  );
  if (!from) return undefined;
  const to = series.find((x) => x.at > from.at && (got(x.sizes) >= backlogBytes * 0.6 || anyDone(x.sizes)));
  // Shorter than this, a share is a batch or two, not a rate: not measured.
  if (!to || to.at - from.at < MIN_WINDOW_MS) return undefined;
  const fromShare = got(from.sizes) / backlogBytes;
  const share = got(to.sizes) / backlogBytes;
  const note =
    `from ${fmt(100 * fromShare, 0)}% (every host sending) to ${fmt(100 * share, 0)}% of the backlog` +
    (share < 0.6 ? ' (a host was done)' : '');
  return { from, to, note };
}

/** Whether every host's ingest file has grown past its size before the backlog (its lines landing). */
function allLanded(sizes: readonly number[], before: readonly number[]): boolean {
  return sizes.every((size, i) => size > (before[i] ?? 0));
}

interface Sender {
  readonly host: HostIdentity;
  readonly source: string;
  readonly ingest: string;
  readonly store: PositionStore;
  fh: FileHandle;
  written: number;
  forwarder?: Forwarder;
  stop?: () => Promise<void>;
}

function startForwarder(sender: Sender, port: number): void {
  const forwarder = createForwarder({
    tls: sender.host,
    controller: { host: '127.0.0.1', port },
    files: [sender.source],
    mode: 'corral',
    store: sender.store,
    log: pino({ level: 'silent' }),
  });
  const ac = new AbortController();
  const running = forwarder.run(ac.signal);
  sender.forwarder = forwarder;
  sender.stop = async () => {
    ac.abort();
    await running;
    await forwarder.close();
  };
}

/** One line (LF included) per host as a template; only its 9-digit sequence number changes. */
const templates = new Map<string, { line: Buffer; seqAt: number }>();

function templateFor(hostName: string): { line: Buffer; seqAt: number } {
  let t = templates.get(hostName);
  if (!t) {
    const line = Buffer.from(`${logLine(0, LINE_BYTES, hostName)}\n`, 'latin1');
    t = { line, seqAt: line.indexOf(' seq=') + 5 };
    templates.set(hostName, t);
  }
  return t;
}

/** `count` lines (logLine's, numbered on from what was written) for a sender's source, counted as written. */
function nextLines(sender: Sender, count: number): Buffer {
  const { line, seqAt } = templateFor(sender.host.hostName);
  const out = Buffer.allocUnsafe(count * line.length);
  for (let i = 0; i < count; i++) {
    const at = i * line.length;
    line.copy(out, at);
    let seq = sender.written + i;
    for (let d = 8; d >= 0; d--) {
      out[at + seqAt + d] = 0x30 + (seq % 10);
      seq = Math.floor(seq / 10);
    }
  }
  sender.written += count;
  return out;
}

/** Appends `count` lines (logLine's, numbered on from what was written) to a sender's source. */
async function appendTo(sender: Sender, count: number): Promise<void> {
  await sender.fh.write(nextLines(sender, count));
}

async function sizeOf(path: string): Promise<number> {
  return stat(path).then(
    (s) => s.size,
    () => 0,
  );
}

async function sha256(path: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

/** Waits until every ingest file is as long as its source; false on the timeout. */
async function drained(senders: readonly Sender[]): Promise<boolean> {
  const deadline = Date.now() + DRAIN_TIMEOUT_MS;
  for (;;) {
    const sizes = await Promise.all(
      senders.map(async (s) => [await sizeOf(s.ingest), await sizeOf(s.source)]),
    );
    if (sizes.every(([a, b]) => a === b)) return true;
    if (Date.now() > deadline) return false;
    await sleep(100);
  }
}

/** How many hosts' ingest files are not their source exactly (length and SHA-256). */
async function inexact(senders: readonly Sender[]): Promise<number> {
  let bad = 0;
  for (const s of senders) {
    if ((await sizeOf(s.ingest)) !== (await sizeOf(s.source))) bad++;
    else if ((await sha256(s.ingest)) !== (await sha256(s.source))) bad++;
  }
  return bad;
}

/** Jain's fairness index of `xs`: 1 for equal shares, 1/n when one takes all. */
export function jainIndex(xs: readonly number[]): number {
  const sum = xs.reduce((a, b) => a + b, 0);
  const squares = xs.reduce((a, b) => a + b * b, 0);
  return squares === 0 ? Number.NaN : (sum * sum) / (xs.length * squares);
}

interface Window {
  readonly seconds: number;
  readonly lines: number;
  readonly fdatasyncs: number;
  readonly listenerCpuMs: number;
  readonly benchCpuMs: number;
}

/** Listener stats, listener CPU and this process's CPU now, to subtract two of. */
async function mark(listener: ListenerChild) {
  const stats = await listener.stats();
  const cpu = process.cpuUsage();
  return {
    at: performance.now(),
    lines: stats.linesIngested,
    fdatasyncs: (stats as { fdatasyncs?: number }).fdatasyncs ?? Number.NaN,
    listenerCpuMs: await processCpuMs(listener.process.pid ?? 0),
    benchCpuMs: (cpu.user + cpu.system) / 1000,
  };
}

function between(a: Awaited<ReturnType<typeof mark>>, b: Awaited<ReturnType<typeof mark>>): Window {
  return {
    seconds: (b.at - a.at) / 1000,
    lines: b.lines - a.lines,
    fdatasyncs: b.fdatasyncs - a.fdatasyncs,
    listenerCpuMs: b.listenerCpuMs - a.listenerCpuMs,
    benchCpuMs: b.benchCpuMs - a.benchCpuMs,
  };
}

interface Result {
  readonly senders: number;
  readonly rate: Window;
  /** Lines/s appended to the sources in the rate phase's window (what was asked of the senders). */
  readonly offered: number;
  /** Hosts whose ingest file is not its source exactly (-1: not checked, the transfer did not end). */
  readonly rateExact: number;
  readonly backlog: Window;
  readonly fairness: number;
  /** Each sender's ingest rate mid-transfer, lines/s (the fairness shares over the window). */
  readonly perSender: readonly number[];
  readonly backlogExact: number;
  readonly backlogNote: string;
  readonly listenerRssBytes: number;
  /** Who got nothing in the fairness window, and when hosts connected and first landed bytes. */
  readonly zeroes: string;
  /** Jain's index from sizes the bench's own loop read (its clock and I/O shared with the senders). */
  readonly loopFairness: number;
  /**
   * Jain's index from the first sample in which every host has landed lines to the first in
   * which one is done (NaN: one was done first), and how long after the first host's first
   * lines the last host's came: fairness among hosts all under way, and the start's spread.
   */
  readonly underWayFairness: number;
  readonly underWayNote: string;
  /** How the backlog phase began: the forwarders' reconnect and the backlog's append. */
  readonly startNote: string;
}

async function runOnce(
  dist: string,
  pki: TestPki,
  n: number,
  options: Options,
  perHostCommits: boolean,
): Promise<Result> {
  const dir = await tempDir(`bench-logs-${n}`);
  let listener: ListenerChild | undefined;
  let sampler: Sampler | undefined;
  const senders: Sender[] = [];
  try {
    const hosts: HostIdentity[] = [];
    for (let i = 0; i < n; i++) hosts.push(await pki.host(`s-${String(i).padStart(3, '0')}`));
    const logDir = join(dir, 'ingest');
    listener = await startListenerChild(dist, pki, hosts, dir, logDir, perHostCommits);
    for (const host of hosts) {
      const source = join(dir, `${host.hostId}.src.log`);
      senders.push({
        host,
        source,
        ingest: join(logDir, `${host.hostId}.log`),
        store: await openPositionStore(join(dir, `${host.hostId}.positions.db`)),
        fh: await open(source, 'a'),
        written: 0,
      });
    }
    // Every forwarder ships one line first, so the measured phases start with all connected.
    for (const s of senders) await appendTo(s, 1);
    for (const s of senders) startForwarder(s, listener.port);
    const started = Date.now();
    while ((await listener.stats()).linesIngested < n) {
      if (Date.now() - started > START_TIMEOUT_MS) throw new Error('senders did not connect in time');
      await sleep(50);
    }

    // Rate phase: R lines/s in total, appended every TICK_MS, due-based so a late tick catches up.
    const perSender = options.rate / n;
    const rateStart = performance.now();
    const owed = (): number => ((performance.now() - rateStart) / 1000) * perSender;
    let appending = true;
    const appender = (async () => {
      const base = senders.map((s) => s.written);
      while (appending) {
        const due = Math.floor(owed());
        await Promise.all(
          senders.map(async (s, i) => {
            const count = due - (s.written - (base[i] ?? 0));
            if (count > 0) await appendTo(s, count);
          }),
        );
        await sleep(TICK_MS);
      }
    })();
    await sleep(WARMUP_MS);
    const offeredA = senders.reduce((a, s) => a + s.written, 0);
    const rateA = await mark(listener);
    await sleep(options.seconds * 1000);
    const rateB = await mark(listener);
    const offered = senders.reduce((a, s) => a + s.written, 0) - offeredA;
    appending = false;
    await appender;
    const rateDrained = await drained(senders);
    const rateExact = rateDrained ? await inexact(senders) : -1;

    // Backlog phase: stop every forwarder and start them all again; once every one is connected
    // and sending (one line each landed), append L lines round-robin, BACKLOG_ROUNDS chunks per
    // host, so every host has lines to send at once and the fairness window measures the
    // listener's share among senders all under way, not the spread of 200 TLS reconnects.
    await Promise.all(senders.map(async (s) => s.stop?.()));
    for (const s of senders) await appendTo(s, 1);
    const ingestedBefore = (await listener.stats()).linesIngested;
    const restartedAt = performance.now();
    for (const s of senders) startForwarder(s, listener.port);
    while ((await listener.stats()).linesIngested < ingestedBefore + n) {
      if (performance.now() - restartedAt > START_TIMEOUT_MS)
        throw new Error('senders did not reconnect in time');
      await sleep(50);
    }
    const reconnectedMs = performance.now() - restartedAt;
    await drained(senders);
    const before = await Promise.all(senders.map((s) => sizeOf(s.ingest)));
    // Made beforehand, so appending is a copy: the window opens only once all of it is written.
    const each = Math.max(1, Math.floor(options.lines / n));
    const backlog = senders.map((s) => nextLines(s, each));
    sampler = await startSampler(
      dir,
      senders.map((s) => s.ingest),
    );
    const backlogStart = performance.now();
    const backlogStartEpoch = performance.timeOrigin + backlogStart;
    const chunk = Math.max(1, Math.ceil(each / BACKLOG_ROUNDS));
    for (let done = 0; done < each; done += chunk) {
      for (const [i, s] of senders.entries()) {
        const lines = backlog[i] as Buffer;
        const lineBytes = lines.length / each;
        // Synchronous: the thread pool is busy with the forwarders' reads, and an async write
        // queued behind them took seconds; this stalls every forwarder alike, before the window.
        const part = lines.subarray(done * lineBytes, Math.min(each, done + chunk) * lineBytes);
        for (let at = 0; at < part.length;) at += writeSync(s.fh.fd, part, at);
      }
    }
    const appendedMs = performance.now() - backlogStart;
    const appendedEpoch = performance.timeOrigin + performance.now();
    const targets = await Promise.all(senders.map((s) => sizeOf(s.source)));
    const backlogBytes = targets.reduce((a, t, i) => a + t - (before[i] ?? 0), 0);
    const timeline = options.timeline ? printTimeline(listener) : undefined;
    // Per host, ms after the start: its session open (seen by this loop), and its first backlog
    // bytes in the ingest file (from the sampler).
    const connectedAt: number[] = senders.map(() => Number.NaN);
    const firstBytesAt: number[] = senders.map(() => Number.NaN);
    let startMark: Awaited<ReturnType<typeof mark>> | undefined;
    let startSizes: number[] = [];
    let endMark: Awaited<ReturnType<typeof mark>> | undefined;
    let endSizes: number[] = [];
    /** Each forwarder's bytes sent and not yet acknowledged at the window's end. */
    let endForwarders: number[] = [];
    let note = 'from 10% (every host sending) to 60% of the backlog';
    const deadline = Date.now() + DRAIN_TIMEOUT_MS;
    let startAt = 0;
    let endAt = 0;
    while (!endMark && Date.now() < deadline) {
      const sampledAt = performance.now();
      const sizes = await Promise.all(senders.map((s) => sizeOf(s.ingest)));
      const got = sizes.reduce((a, size, i) => a + size - (before[i] ?? 0), 0);
      senders.forEach((s, i) => {
        const since = sampledAt - backlogStart;
        if (Number.isNaN(connectedAt[i]) && s.forwarder?.stats().connected) connectedAt[i] = since;
      });
      const anyDone = sizes.some((size, i) => size >= (targets[i] ?? 0));
      // A host done before every host was sending: no window (reported as not measured).
      if (!startMark && anyDone) break;
      if (!startMark && got >= backlogBytes * 0.1 && allLanded(sizes, before) && !anyDone) {
        startMark = await mark(listener);
        startSizes = sizes;
        startAt = sampledAt;
      } else if (startMark && (got >= backlogBytes * 0.6 || anyDone)) {
        endMark = await mark(listener);
        endSizes = sizes;
        endForwarders = senders.map((s) => s.forwarder?.stats().files[0]?.inFlight ?? Number.NaN);
        endAt = sampledAt;
        if (anyDone && got < backlogBytes * 0.6) {
          note = `from 10% (every host sending) to ${fmt((100 * got) / backlogBytes, 0)}% of the backlog (a host was done)`;
        }
      }
      await sleep(SAMPLE_MS);
    }
    const loopShares = endSizes.map((size, i) => size - (startSizes[i] ?? 0));
    const backlogDrained = await drained(senders);
    const series = await sampler.series();
    await sampler.stop();
    const sampled = sampledWindow(series, before, targets, backlogBytes, appendedEpoch);
    const shares = sampled ? sampled.to.sizes.map((size, i) => size - (sampled.from.sizes[i] ?? 0)) : [];
    const sampledMs = sampled ? sampled.to.at - sampled.from.at : Number.NaN;
    const allUnderWay = series.find((x) => x.sizes.every((size, i) => size > (before[i] ?? 0)));
    const firstDone = series.find((x) => x.sizes.some((size, i) => size >= (targets[i] ?? 0)));
    const firstLanded = series.find((x) => x.sizes.some((size, i) => size > (before[i] ?? 0)));
    const underWay =
      allUnderWay && firstDone && firstDone.at > allUnderWay.at
        ? firstDone.sizes.map((size, i) => size - (allUnderWay.sizes[i] ?? 0))
        : undefined;
    const underWayNote =
      allUnderWay && firstLanded
        ? `every host had landed lines ${fmt((allUnderWay.at - firstLanded.at) / 1000, 1)} s after the first did` +
          (underWay && firstDone && allUnderWay
            ? `; from then until a host was done, ${fmt((firstDone.at - allUnderWay.at) / 1000, 1)} s`
            : '; a host was done before that')
        : 'not every host landed lines';
    senders.forEach((_, i) => {
      const first = series.find((x: { sizes: number[] }) => (x.sizes[i] ?? 0) > (before[i] ?? 0));
      firstBytesAt[i] = first ? first.at - backlogStartEpoch : Number.NaN;
    });
    timeline?.stop();
    const listenerRssBytes = await processRssBytes(listener.process.pid ?? 0);
    const backlogExact = backlogDrained ? await inexact(senders) : -1;
    const empty: Window = { seconds: Number.NaN, lines: 0, fdatasyncs: 0, listenerCpuMs: 0, benchCpuMs: 0 };
    return {
      senders: n,
      rate: between(rateA, rateB),
      offered: offered / between(rateA, rateB).seconds,
      rateExact,
      // Lines from the ingest files' growth (the fairness shares), not the listener's count
      // of settled lines, which its stats answer may give late under load.
      // Lines/s and shares from the sampler's window; fdatasyncs and CPU between the bench's marks.
      backlog:
        startMark && endMark && sampled
          ? {
              ...between(startMark, endMark),
              lines:
                (shares.reduce((a, b) => a + b, 0) / (LINE_BYTES + 1)) *
                ((endMark.at - startMark.at) / sampledMs),
            }
          : empty,
      fairness: n === 1 ? 1 : jainIndex(shares),
      loopFairness: n === 1 ? 1 : jainIndex(loopShares),
      underWayFairness: n === 1 ? 1 : underWay ? jainIndex(underWay) : Number.NaN,
      underWayNote,
      startNote:
        `backlog phase: the ${n} forwarders restarted and every one connected and sending in ${fmt(reconnectedMs / 1000, 1)} s; ` +
        `then ${each} lines per host (made beforehand) appended, ${BACKLOG_ROUNDS} round-robin chunks, in ${fmt(appendedMs / 1000, 2)} s; ` +
        'the window opens after that',
      perSender: sampled ? shares.map((b) => b / (LINE_BYTES + 1) / (sampledMs / 1000)) : [],
      backlogExact,
      backlogNote:
        startMark && endMark && sampled
          ? `${sampled.note}, ${fmt(sampledMs / 1000, 1)} s by the sampler (fdatasync and CPU over ` +
            `${fmt((endMark.at - startMark.at) / 1000, 1)} s between the bench's marks; ${note} as its own loop saw it, ` +
            `${fmt((endAt - startAt) / 1000, 1)} s)`
          : `not measured (a host was done before every host was sending or within ${MIN_WINDOW_MS / 1000} s of it, or timed out)`,
      listenerRssBytes,
      zeroes: sampled
        ? zeroesText(
            shares,
            connectedAt,
            firstBytesAt,
            endForwarders,
            sampled.from.at - backlogStartEpoch,
            each,
          )
        : '',
    };
  } finally {
    await sampler?.stop();
    await Promise.all(senders.map(async (s) => s.stop?.()));
    for (const s of senders) {
      await s.fh.close();
      await s.store.close();
    }
    await listener?.stop();
    await rm(dir, { recursive: true, force: true });
  }
}

/**
 * The hosts that got nothing in the fairness window, and for them and for the others the
 * median time (after the forwarders were started) at which the session was open and the
 * first backlog bytes landed: to tell a late start from a listener that serves them late.
 */
function zeroesText(
  shares: readonly number[],
  connectedAt: readonly number[],
  firstBytesAt: readonly number[],
  unacked: readonly number[],
  windowStartMs: number,
  linesPerHost: number,
): string {
  if (shares.length < 2) return '';
  // A forwarder batch is at most 256 KiB of lines: hosts land whole batches, so over a short
  // window the shares differ by a batch even when hosts take strict turns.
  const batchLines = Math.floor((256 * 1024) / (LINE_BYTES + 1));
  const meanLines = shares.reduce((a, b) => a + b, 0) / shares.length / (LINE_BYTES + 1);
  const batches = `${fmt(meanLines / batchLines, 1)} batches of about ${batchLines} lines per host on average in the window (of ${fmt(linesPerHost / batchLines, 1)})`;
  const zero = shares.flatMap((b, i) => (b === 0 ? [i] : []));
  const rest = shares.flatMap((b, i) => (b > 0 ? [i] : []));
  const at = (xs: readonly number[], idx: readonly number[]): string => {
    const v = idx.map((i) => xs[i] as number).filter((x) => !Number.isNaN(x));
    const late = idx.length - v.length;
    const m = v.length === 0 ? '-' : `${fmt(median(v.sort((a, b) => a - b)) / 1000, 2)} s`;
    return late > 0 ? `${m} (${late} not by the window's end)` : m;
  };
  const kib = (idx: readonly number[]): string =>
    fmt(median(idx.map((i) => unacked[i] ?? Number.NaN).sort((a, b) => a - b)) / 1024, 0);
  const names = zero.slice(0, 8).map((i) => `s-${String(i).padStart(3, '0')}`);
  return (
    `hosts with nothing in the window (it began ${fmt(windowStartMs / 1000, 2)} s after the start): ${zero.length}` +
    (zero.length > 0
      ? ` (${names.join(' ')}${zero.length > 8 ? ' …' : ''}): session open at ${at(connectedAt, zero)}, first bytes at ${at(firstBytesAt, zero)}, sent unacknowledged at the end ${kib(zero)} KiB (medians)`
      : '') +
    `; the others: session open at ${at(connectedAt, rest)}, first bytes at ${at(firstBytesAt, rest)}, unacknowledged ${kib(rest)} KiB; ` +
    batches
  );
}

/** Every second: the listener's counters since the second before (diagnosis, `--timeline`). */
function printTimeline(listener: ListenerChild): { stop(): void } {
  let previous: SyslogListenerStats | undefined;
  const timer = setInterval(() => {
    void listener.stats().then((now) => {
      if (previous) {
        const d = (k: keyof SyslogListenerStats): number =>
          (now[k] as number) - ((previous?.[k] as number) ?? 0);
        console.log(
          `  +1s: ${d('linesIngested')} lines, ${d('commits')} commits, ${d('fdatasyncs')} fdatasyncs, ` +
            `${d('checkpoints')} checkpoints, ${d('checkpointWaits')} checkpoint waits`,
        );
      }
      previous = now;
    });
  }, 1000);
  return { stop: () => clearInterval(timer) };
}

const perSecond = (count: number, w: Window): number => count / w.seconds;
const cores = (ms: number, w: Window): number => ms / 1000 / w.seconds;

function line(label: string, w: Window, extra: string): string {
  return [
    label.padEnd(34),
    `${fmt(perSecond(w.lines, w), 0).padStart(8)} lines/s`,
    `${fmt(perSecond(w.fdatasyncs, w), 0).padStart(6)} fdatasync/s`,
    `listener ${fmt(cores(w.listenerCpuMs, w), 2)} cores`,
    `(${fmt((w.listenerCpuMs * 1000) / Math.max(1, w.lines), 2)} µs/line)`,
    `senders ${fmt(cores(w.benchCpuMs, w), 2)} cores`,
    extra,
  ].join('  ');
}

/** min / median / max of the senders' lines/s. */
function perSenderText(xs: readonly number[]): string {
  if (xs.length === 0) return 'not measured';
  const sorted = [...xs].sort((a, b) => a - b);
  return `lines/s min ${fmt(sorted[0] as number, 0)} median ${fmt(median(sorted), 0)} max ${fmt(sorted[sorted.length - 1] as number, 0)}`;
}

const exactText = (bad: number): string =>
  bad === 0 ? 'exactly once: yes' : `exactly once: NO (${bad} hosts)`;

export async function runSenders(args: string[]): Promise<void> {
  const options = sendersOptions(args);
  console.log(
    `logs --senders: ${options.senders} hosts beside 1, each a real forwarder with its own certificate; ` +
      `rate phase ${options.rate} lines/s in total for ${options.seconds}s after ${WARMUP_MS / 1000}s, ` +
      `backlog phase ${options.lines} lines`,
  );
  console.log(
    `node ${process.version}, ${cpus().length} cores, load average ${loadavg()
      .map((l) => fmt(l, 2))
      .join(' ')} (a shared machine: compare the two rows of one run, not runs)`,
  );
  console.log('');
  const pki = await makePki();
  const builds = [
    ...(options.baseline ? [{ name: 'baseline', dist: resolve(options.baseline), perHost: false }] : []),
    ...(options.ungrouped
      ? [{ name: 'ungrouped (one host per commit)', dist: join(ROOT, 'dist'), perHost: true }]
      : []),
    {
      name: options.baseline || options.ungrouped ? 'grouped' : '',
      dist: join(ROOT, 'dist'),
      perHost: false,
    },
  ];
  const ungroupedResults: Result[][] = [];
  const results: Result[][] = [];
  for (let round = 0; round < options.rounds; round++) {
    for (const build of builds) {
      const pair: Result[] = [];
      for (const n of [1, options.senders]) {
        const r = await runOnce(build.dist, pki, n, options, build.perHost);
        pair.push(r);
        const label = `${build.name ? `${build.name}: ` : ''}${n} sender${n === 1 ? '' : 's'}`;
        console.log(
          line(`${label}, rate`, r.rate, `(offered ${fmt(r.offered, 0)} lines/s)  ${exactText(r.rateExact)}`),
        );
        console.log(
          line(
            `${label}, backlog`,
            r.backlog,
            `fairness (Jain) ${fmt(r.fairness, 3)} (${fmt(r.loopFairness, 3)} from the bench's own loop)  ${exactText(r.backlogExact)}; ${r.backlogNote}`,
          ),
        );
        console.log(
          `  per sender mid-transfer ${perSenderText(r.perSender)}; listener RSS at the end ${fmt(r.listenerRssBytes / 2 ** 20, 1)} MiB`,
        );
        console.log(`  ${r.startNote}`);
        if (r.zeroes) console.log(`  ${r.zeroes}`);
        if (n > 1) {
          console.log(
            `  fairness (Jain) among hosts all under way ${fmt(r.underWayFairness, 3)}: ${r.underWayNote}`,
          );
        }
      }
      if (build.perHost) ungroupedResults.push(pair);
      else if (build.dist === join(ROOT, 'dist')) results.push(pair);
    }
    console.log('');
  }
  for (const [label, set] of [
    ['grouped', results],
    ['ungrouped', ungroupedResults],
  ] as const) {
    if (set.length === 0) continue;
    const med = (pick: (r: Result) => number, i: number): string =>
      fmt(median(set.map((pair) => pick(pair[i] as Result))), 2);
    for (const [i, n] of [1, options.senders].entries()) {
      console.log(
        `${label}, median of ${set.length}, ${n} sender(s): rate ${med((r) => perSecond(r.rate.lines, r.rate), i)} lines/s, ` +
          `${med((r) => perSecond(r.rate.fdatasyncs, r.rate), i)} fdatasync/s, ` +
          `${med((r) => cores(r.rate.listenerCpuMs, r.rate), i)} cores; backlog ${med((r) => perSecond(r.backlog.lines, r.backlog), i)} lines/s, ` +
          `per sender median ${med((r) => median([...r.perSender]), i)} lines/s, fairness ${med((r) => r.fairness, i)}`,
      );
    }
  }
  const last = results[results.length - 1];
  const one = last?.[0];
  const many = last?.[1];
  if (one && many) {
    const ratio = (a: number, b: number): string => fmt(a / b, 2);
    console.log(
      `${options.senders} senders against 1, rate phase: fdatasync/s ×${ratio(
        perSecond(many.rate.fdatasyncs, many.rate),
        perSecond(one.rate.fdatasyncs, one.rate),
      )}, listener CPU ×${ratio(cores(many.rate.listenerCpuMs, many.rate), cores(one.rate.listenerCpuMs, one.rate))}`,
    );
    console.log(
      `goal: fairness ≥ 0.90 across ${options.senders} senders mid-transfer, in a window that opens once every ` +
        `sender is connected and its lines are landing: ${fmt(many.fairness, 3)} ${many.fairness >= 0.9 ? 'met' : 'NOT met'}`,
    );
  }
}

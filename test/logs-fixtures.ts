/**
 * Shared fixtures for the log forwarder/listener tests and benchmark: real certificates from
 * our pki/, a pin table, RFC 5424 lines with sequence numbers and an exactly-once check.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { appendFile, mkdir, mkdtemp, readdir, readFile, rename, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, dirname, join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import pino, { type Logger } from 'pino';
import {
  createSyslogListener,
  type PinLookup,
  type PinnedHost,
  type SyslogListener,
} from '../controller/syslog/index.js';
import { createCa, writeBundle, type CertificateAuthority } from '../pki/index.js';
import type { TlsMaterial } from '../pki/tls-options.js';

export interface HostIdentity extends TlsMaterial {
  readonly hostId: string;
  readonly hostName: string;
  readonly fingerprint: string;
}

export interface TestPki {
  readonly ca: CertificateAuthority & { keyPem: string };
  /** The controller's server identity (role controller, SAN 127.0.0.1 and localhost). */
  readonly controller: TlsMaterial & { fingerprint: string };
  host(hostId: string): Promise<HostIdentity>;
}

export async function makePki(): Promise<TestPki> {
  const ca = await createCa({ commonName: 'Corral test CA' });
  const server = await ca.issue({
    role: 'controller',
    commonName: 'controller',
    dnsNames: ['localhost'],
    ipAddresses: ['127.0.0.1'],
  });
  return {
    ca,
    controller: {
      caPem: ca.certPem,
      certPem: server.certPem,
      keyPem: server.keyPem,
      fingerprint: server.fingerprint,
    },
    async host(hostId) {
      const agent = await ca.issue({ role: 'agent', hostId, commonName: hostId, ipAddresses: ['127.0.0.1'] });
      return {
        hostId,
        hostName: hostId,
        caPem: ca.certPem,
        certPem: agent.certPem,
        keyPem: agent.keyPem,
        fingerprint: agent.fingerprint,
      };
    },
  };
}

/** The test's pin table: a PinLookup over a plain Map, as the controller's registry would answer. */
export class TestPinTable implements PinLookup {
  private readonly pins = new Map<string, PinnedHost>();
  private readonly listeners = new Set<(hostId: string) => void>();

  pin(identity: HostIdentity): void {
    this.pins.set(identity.fingerprint, { hostId: identity.hostId, hostName: identity.hostName });
  }

  /** Decommission: drops the host's pins and tells the listener. */
  revoke(hostId: string): void {
    for (const [fp, host] of this.pins) if (host.hostId === hostId) this.pins.delete(fp);
    for (const l of this.listeners) l(hostId);
  }

  lookup(fingerprint: string): PinnedHost | undefined {
    return this.pins.get(fingerprint);
  }

  onRevoked(listener: (hostId: string) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }
}

export interface CapturedLog {
  readonly log: Logger;
  readonly entries: Record<string, unknown>[];
}

/** A pino logger whose entries land in an array (warn and above unless told). */
export function captureLog(level = 'warn'): CapturedLog {
  const entries: Record<string, unknown>[] = [];
  const log = pino(
    { level },
    {
      write(line: string) {
        entries.push(JSON.parse(line) as Record<string, unknown>);
      },
    },
  );
  return { log, entries };
}

export async function tempDir(prefix: string): Promise<string> {
  return mkdtemp(join(tmpdir(), `corral-${prefix}-`));
}

export async function startListener(
  pki: TestPki,
  pins: PinLookup,
  logDir: string,
  options: {
    log?: Logger;
    port?: number;
    maxFrameBytes?: number;
    idleTimeoutMs?: number;
    maxConnectionsPerHost?: number;
  } = {},
): Promise<{ listener: SyslogListener; port: number }> {
  const listener = createSyslogListener({
    tls: pki.controller,
    logDir,
    pins,
    log: options.log ?? pino({ level: 'silent' }),
    maxFrameBytes: options.maxFrameBytes,
    idleTimeoutMs: options.idleTimeoutMs,
    maxConnectionsPerHost: options.maxConnectionsPerHost,
  });
  const addr = await listener.listen('127.0.0.1', options.port ?? 0);
  return { listener, port: addr.port };
}

const PAD = 'x'.repeat(400);

/** RFC 5424 line number `seq` (no LF), about `size` bytes long. */
export function logLine(seq: number, size = 200, hostName = 'web-1'): string {
  const head = `<134>1 2025-01-01T00:00:00.000Z ${hostName} app 4242 - - seq=${String(seq).padStart(9, '0')} `;
  return head + PAD.slice(0, Math.max(0, size - head.length));
}

/** Appends lines `from` .. `to - 1`, in slices, so a large range does not build one huge string. */
export async function appendLines(path: string, from: number, to: number, size = 200): Promise<void> {
  const slice = 5000;
  for (let start = from; start < to; start += slice) {
    const lines: string[] = [];
    for (let i = start; i < Math.min(to, start + slice); i++) lines.push(logLine(i, size));
    await appendFile(path, `${lines.join('\n')}\n`);
  }
}

export async function writeLines(path: string, from: number, to: number, size = 200): Promise<void> {
  await writeFile(path, '');
  await appendLines(path, from, to, size);
}

/** The sequence numbers in an ingest file, in file order. */
export async function sequencesIn(path: string): Promise<number[]> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (e: unknown) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw e;
  }
  const out: number[] = [];
  for (const line of text.split('\n')) {
    const m = / seq=(\d{9}) /.exec(line);
    if (m) out.push(Number(m[1]));
  }
  return out;
}

/** Describes how `seqs` differs from exactly from..from+count-1 in order, or undefined when it does not. */
export function exactlyOnceProblem(seqs: readonly number[], count: number, from = 0): string | undefined {
  for (let i = 0; i < seqs.length; i++) {
    if (seqs[i] !== from + i) {
      return `line ${i} has seq ${seqs[i]} (expected ${from + i}; previous ${seqs[i - 1]})`;
    }
  }
  if (seqs.length !== count) return `got ${seqs.length} lines, expected ${count}`;
  return undefined;
}

/** Polls `check` until it returns true; throws after `timeoutMs` with `what`. */
export async function waitFor(
  what: string,
  check: () => Promise<boolean> | boolean,
  timeoutMs = 30_000,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await check()) return;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(25);
  }
}

/** Which of 0..count-1 `seqs` lacks, as ranges (`1200-1399, 5000`), and how many it repeats. */
export function missingSummary(seqs: readonly number[], count: number): string {
  const seen = new Set(seqs);
  const ranges: string[] = [];
  for (let i = 0; i < count; i++) {
    if (seen.has(i)) continue;
    let j = i;
    while (j + 1 < count && !seen.has(j + 1)) j++;
    ranges.push(i === j ? `${i}` : `${i}-${j}`);
    i = j;
  }
  const repeated = seqs.length - seen.size;
  return `missing ${ranges.length > 0 ? ranges.slice(0, 20).join(', ') : 'none'}; ${repeated} repeated`;
}

/**
 * Polls `count` until it reaches `want`. Fails only once it has not grown for `stallMs`, so a
 * loaded machine that delivers slowly passes and a delivery that stopped fails (with `what`
 * and the last count), instead of either depending on a fixed deadline.
 */
export async function waitForCount(
  what: string,
  count: () => Promise<number>,
  want: number,
  stallMs = 30_000,
): Promise<number> {
  let last = -1;
  let grewAt = Date.now();
  for (;;) {
    const now = await count();
    if (now >= want) return now;
    if (now > last) {
      last = now;
      grewAt = Date.now();
    } else if (Date.now() - grewAt > stallMs) {
      throw new Error(`${what}: stuck at ${now} of ${want} for ${stallMs} ms`);
    }
    await sleep(50);
  }
}

/**
 * Waits until the ingest file holds `count` sequenced lines, as long as lines keep arriving
 * (`stallMs` without a new one fails, saying which lines are missing).
 */
export async function waitForLines(path: string, count: number, stallMs = 30_000): Promise<number[]> {
  let seqs: number[] = [];
  try {
    await waitForCount(
      `lines in ${path}`,
      async () => {
        seqs = await sequencesIn(path);
        return seqs.length;
      },
      count,
      stallMs,
    );
  } catch (e: unknown) {
    throw new Error(`${e instanceof Error ? e.message : String(e)}: ${missingSummary(seqs, count)}`);
  }
  return seqs;
}

/** A worker state dir with a bundle whose agent identity is `host` and whose syslog is `port`. */
export async function workerStateDir(pki: TestPki, host: HostIdentity, port: number): Promise<string> {
  const dir = await tempDir('worker');
  await writeBundle(join(dir, 'bundle'), {
    caPem: pki.ca.certPem,
    manifest: {
      version: 1,
      hostId: host.hostId,
      hostName: host.hostName,
      address: '127.0.0.1',
      agentPort: 8765,
      updaterPort: 8766,
      controller: '127.0.0.1:8771',
      syslog: `127.0.0.1:${port}`,
      controllerClientFingerprint: pki.controller.fingerprint,
      caFingerprint: pki.ca.fingerprint,
    },
    identities: { agent: { certPem: host.certPem, keyPem: host.keyPem } },
  });
  await mkdir(join(dir, 'logs'), { recursive: true });
  return dir;
}

/**
 * Appends lines from..to-1 in small steps (`perStep` lines every `stepMs`), the way a busy
 * service writes, so that what a test does meanwhile happens mid-stream.
 */
export async function appendSlowly(
  path: string,
  from: number,
  to: number,
  options: { perStep?: number; stepMs?: number } = {},
): Promise<void> {
  const perStep = options.perStep ?? 200;
  for (let i = from; i < to; i += perStep) {
    await appendLines(path, i, Math.min(to, i + perStep));
    await sleep(options.stepMs ?? 5);
  }
}

/** The repository root, whether this runs from test/ (vitest) or dist/test/ (benchmarks). */
const ROOT = ((): string => {
  const up = resolve(dirname(fileURLToPath(import.meta.url)), '..');
  return basename(up) === 'dist' ? dirname(up) : up;
})();

/** Teardown steps a test registers; run in reverse by its afterEach. */
export type Cleanups = (() => Promise<void>)[];

/** A child process whose stdout and stderr are collected. */
export interface Child {
  readonly process: ChildProcess;
  /** Everything it has written so far (stdout and stderr interleaved). */
  output(): string;
  exited(): Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

function track(cleanups: Cleanups, child: ChildProcess): Child {
  let out = '';
  child.stdout?.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr?.on('data', (d: Buffer) => (out += d.toString()));
  const exit = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once('exit', (code, signal) => resolve({ code, signal })),
  );
  cleanups.push(async () => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    await exit;
  });
  return { process: child, output: () => out, exited: () => exit };
}

/** SIGKILL, and wait for the process to be gone. */
export async function killHard(child: Child): Promise<void> {
  if (child.process.exitCode === null && child.process.signalCode === null) child.process.kill('SIGKILL');
  await child.exited();
}

/** `corral forwarder run` as a worker runs it (`extra`: more flags, e.g. `--mode rfc5425`). */
export function spawnForwarder(
  cleanups: Cleanups,
  stateDir: string,
  files: readonly string[],
  extra: readonly string[] = [],
): Child {
  return track(
    cleanups,
    spawn(
      process.execPath,
      [
        join(ROOT, 'bin', 'corral.js'),
        'forwarder',
        'run',
        '--state-dir',
        stateDir,
        ...files.flatMap((f) => ['--file', f]),
        '--poll-interval',
        '20ms',
        '--log-level',
        'warn',
        ...extra,
      ],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    ),
  );
}

/**
 * The listener in a process of its own (dist/test/logs-listener-child.js), so a test can kill
 * -9 it; resolves once it listens. Port 0 the first time, then the same port again. `host`:
 * the pinned host or hosts.
 */
export async function spawnListener(
  cleanups: Cleanups,
  pki: TestPki,
  host: HostIdentity | readonly HostIdentity[],
  logDir: string,
  dir: string,
  port: number,
  options: {
    journalBytes?: number | undefined;
    maxFileBytes?: number | undefined;
    keepFiles?: number | undefined;
    /** The host name the pins give for each host (default: its id). */
    hostName?: ((h: HostIdentity) => string) | undefined;
  } = {},
): Promise<Child & { port: number }> {
  const config = join(dir, `listener-${port}.json`);
  const hosts = Array.isArray(host) ? host : [host];
  await writeFile(
    config,
    JSON.stringify({
      tls: { caPem: pki.controller.caPem, certPem: pki.controller.certPem, keyPem: pki.controller.keyPem },
      logDir,
      port,
      pins: hosts.map((h: HostIdentity) => ({
        fingerprint: h.fingerprint,
        hostId: h.hostId,
        hostName: options.hostName?.(h) ?? h.hostName,
      })),
      journalBytes: options.journalBytes,
      maxFileBytes: options.maxFileBytes,
      keepFiles: options.keepFiles,
    }),
    { mode: 0o600 },
  );
  const proc = spawn(process.execPath, [join(ROOT, 'dist', 'test', 'logs-listener-child.js'), config], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const lines = createInterface({ input: proc.stdout });
  const child = track(cleanups, proc);
  for await (const line of lines) {
    const m = /^listening (\d+)$/.exec(line);
    if (m) return { ...child, port: Number(m[1]) };
  }
  throw new Error(`listener child exited before listening: ${child.output()}`);
}

/**
 * logrotate's numbered rename-and-create: `path.N` → `path.N+1` (oldest first), `path` →
 * `path.1`, and a new file at `path` holding lines `from`..`to - 1` (none when equal). The
 * old file may get `late` more lines first (the service writes on until it reopens its log).
 */
export async function rotate(
  path: string,
  from: number,
  to: number,
  late?: { from: number; to: number },
): Promise<void> {
  const dir = dirname(path);
  const base = basename(path);
  const numbers = (await readdir(dir))
    .map((n) => (n.startsWith(`${base}.`) ? Number(n.slice(base.length + 1)) : NaN))
    .filter((n) => Number.isInteger(n) && n > 0)
    .sort((a, b) => b - a);
  for (const n of numbers) await rename(`${path}.${n}`, `${path}.${n + 1}`);
  await rename(path, `${path}.1`);
  if (late) await appendLines(`${path}.1`, late.from, late.to);
  await writeFile(path, '');
  if (to > from) await appendLines(path, from, to);
}

/** A small seeded PRNG (mulberry32), so a chaos run can be repeated from its printed seed. */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

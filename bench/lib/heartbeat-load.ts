import type { EnrollResponse } from '../../protocol/enrollment.js';
import { readFile } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { buildConnector, Client } from 'undici';
import { clientTlsOptions, type TlsMaterial } from '../../pki/index.js';
import { parseHostPort } from '../../kit/host-port.js';
import type { HeartbeatRequest } from '../../protocol/heartbeat.js';

/** USER_HZ on Linux. */
const CLOCK_TICKS_PER_S = 100;
/** Upper bound of an automatic warm-up (the connect storm), in ms. */
export const MAX_AUTO_WARMUP_MS = 300_000;
/**
 * In an automatic warm-up, how long after the storm (every worker answered once) and every
 * worker's second answer measuring starts, in ms.
 */
export const SETTLE_AFTER_STORM_MS = 1_000;

export interface SimulatedWorker {
  readonly material: TlsMaterial;
  readonly body: string;
}

export interface Run {
  readonly count: number;
  readonly errors: number;
  readonly seconds: number;
  readonly latenciesMs: number[];
  /** CPU the server process used in the measured window, in ms (user + system). */
  readonly serverCpuMs: number;
  /** From the first request until every worker had one heartbeat answered, in ms (NaN: never). */
  readonly stormMs: number;
  /** How long the warm-up lasted, in ms. */
  readonly warmupMs: number;
  /**
   * CPU the server used from the first request to the storm's end, in ms: on a shared
   * machine the storm's wall time depends on the load, this does not.
   */
  readonly stormServerCpuMs: number;
  /** CPU this process (the simulated workers) used over the same span, in ms. */
  readonly stormClientCpuMs: number;
  /**
   * TCP connections dropped because a listen queue was full (TcpExt ListenOverflows of the
   * whole machine, so other processes' count too) over the same span.
   */
  readonly stormListenOverflows: number;
  /** What the first failed heartbeat said, if one failed. */
  readonly firstError: string | undefined;
}

/** utime + stime of a process, in ms, from /proc (Linux). */
export async function processCpuMs(pid: number): Promise<number> {
  const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const ticks = Number(fields[11]) + Number(fields[12]);
  return (ticks * 1000) / CLOCK_TICKS_PER_S;
}

/** TcpExt ListenOverflows of the machine (connections dropped at a full listen queue), from /proc. */
export async function listenOverflows(): Promise<number> {
  const text = await readFile('/proc/net/netstat', 'utf8').catch(() => '');
  const lines = text.split('\n').filter((l) => l.startsWith('TcpExt:'));
  const names = lines[0]?.split(' ') ?? [];
  const values = lines[1]?.split(' ') ?? [];
  const i = names.indexOf('ListenOverflows');
  return i > 0 ? Number(values[i]) : Number.NaN;
}

const cpuOfThisProcessMs = (): number => {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1000;
};

/** Resident set size of a process, in bytes, from /proc (Linux). */
export async function processRssBytes(pid: number): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8');
  const kib = Number(/^VmRSS:\s+(\d+) kB$/m.exec(status)?.[1]);
  return kib * 1024;
}

export const mib = (bytes: number): number => bytes / (1024 * 1024);

export function heartbeatRequest(hostId: string): HeartbeatRequest {
  return {
    hostId,
    agentVersion: '0.1.0',
    generation: 3,
    metrics: {
      load1: 0.42,
      load5: 0.38,
      load15: 0.3,
      memTotalBytes: 8_000_000_000,
      memAvailableBytes: 5_100_000_000,
      diskTotalBytes: 100_000_000_000,
      diskFreeBytes: 61_000_000_000,
      uptimeSeconds: 86_400,
    },
    services: ['api', 'worker', 'cron'].map((name, i) => ({
      name,
      state: 'running' as const,
      restarts: i,
      lastError: null,
      pid: 1000 + i,
      since: '2024-01-01T00:00:00.000Z',
    })),
    events: [],
  };
}

/**
 * How long a simulated worker waits for its TLS connection, in ms: a connect storm of
 * thousands of full handshakes on a loaded 2-core machine takes longer than undici's 10 s.
 */
const CONNECT_TIMEOUT_MS = 120_000;

/** A simulated worker's client, holding the last TLS session its server sent. */
export type HeartbeatClient = Client & { heldSession(): Buffer | undefined };

function clientFor(endpoint: string, material: TlsMaterial): HeartbeatClient {
  const { host, port } = parseHostPort(endpoint);
  const base = buildConnector({
    ...clientTlsOptions(material, { roles: ['controller'] }),
    servername: 'localhost',
    timeout: CONNECT_TIMEOUT_MS,
  });
  // undici's session cache holds sessions by WeakRef, so a collection can drop them between
  // connections; a worker holds its latest session, and so does each simulated one.
  let held: Buffer | undefined;
  const connect: buildConnector.connector = (opts, callback) =>
    base(opts, (...args) => {
      args[1]?.on('session', (session: Buffer) => (held = session));
      callback(...args);
    });
  const client = new Client(`https://${host}:${port}`, {
    connect,
    pipelining: 1,
    keepAliveTimeout: 60_000,
  });
  return Object.assign(client, { heldSession: () => held });
}

/**
 * Every worker posts one heartbeat at once on its own client and waits for its answer: a
 * fleet's first contact with a controller it holds no TLS session for (full handshakes).
 * Returns how long until all had their answer, in ms, and how many failed.
 */
export async function firstContact(
  clients: readonly Client[],
  workers: readonly SimulatedWorker[],
): Promise<{ readonly ms: number; readonly errors: number; readonly sessions: number }> {
  const began = performance.now();
  let errors = 0;
  await Promise.all(
    clients.map(async (client, i) => {
      try {
        const res = await client.request({
          method: 'POST',
          path: '/v1/heartbeat',
          headers: { 'content-type': 'application/json' },
          body: workers[i]!.body,
        });
        await res.body.dump();
        if (res.statusCode !== 200) errors++;
      } catch {
        // Any failure (refused, reset, timed out) is counted as an error of the run.
        errors++;
      }
    }),
  );
  const ms = performance.now() - began;
  const sessions = clients.filter((c) => (c as Partial<HeartbeatClient>).heldSession?.()).length;
  return { ms, errors, sessions };
}

/** One client (one persistent connection once used) per worker, to share between runs. */
export function heartbeatClients(endpoint: string, workers: readonly SimulatedWorker[]): HeartbeatClient[] {
  return workers.map((w) => clientFor(endpoint, w.material));
}

export interface DriveOptions {
  readonly seconds: number;
  /**
   * Fixed warm-up in ms (every worker posting back to back from the start); `'auto'`: the
   * connect storm, in which every worker connects and posts one heartbeat, as after a
   * controller restart, and waits until all have had their answer; then SETTLE_AFTER_STORM_MS.
   */
  readonly warmup: number | 'auto';
  readonly serverPid: number;
  /** Told once the measured window starts and once it ends (e.g. to sample the server's RSS). */
  readonly onMeasuring?: (phase: 'start' | 'end') => Promise<void> | void;
  /** Clients made by heartbeatClients (connected by an earlier run); left open. Default: new ones, closed after. */
  readonly clients?: readonly Client[];
  /**
   * Each heartbeat on a new connection (closed after the answer), resumed from the client's
   * TLS session cache: what a worker pays when idle connections are closed between heartbeats.
   */
  readonly reconnect?: boolean;
}

/**
 * Every worker loops on its own persistent mTLS connection: post, wait for the answer,
 * post again (a closed loop, so the rate is what the server sustains). Heartbeats answered
 * in the warm-up are not counted; the measured window is `seconds` long.
 */
export async function driveHeartbeats(
  endpoint: string,
  workers: readonly SimulatedWorker[],
  options: DriveOptions,
): Promise<Run> {
  const clients = options.clients ?? heartbeatClients(endpoint, workers);
  const latencies: number[] = [];
  let count = 0;
  let errors = 0;
  let firstError: string | undefined;
  const began = performance.now();
  let answered = 0;
  let stormEnd = Number.NaN;
  let warmEnd = options.warmup === 'auto' ? Number.POSITIVE_INFINITY : began + options.warmup;
  let end = warmEnd + options.seconds * 1000;
  const cpuAtBegin = await processCpuMs(options.serverPid);
  const clientCpuAtBegin = cpuOfThisProcessMs();
  const overflowsAtBegin = await listenOverflows();
  let cpuAtStorm = Number.NaN;
  let clientCpuAtStorm = Number.NaN;
  let overflowsAtStorm = Number.NaN;
  let stormResolve: (() => void) | undefined;
  const stormOver = new Promise<void>((resolve) => (stormResolve = resolve));
  const stormCpu = stormOver.then(async () => {
    clientCpuAtStorm = cpuOfThisProcessMs();
    cpuAtStorm = await processCpuMs(options.serverPid);
    overflowsAtStorm = await listenOverflows();
  });
  const limits = new AbortController();
  const warmupLimit = (): Promise<void> =>
    sleep(MAX_AUTO_WARMUP_MS, undefined, { signal: limits.signal }).catch(
      () => undefined /* aborted once the run is over */,
    );
  // In the automatic warm-up a worker answered once waits for the others (the storm's end).
  const stormOrLimit = options.warmup === 'auto' ? Promise.race([stormOver, warmupLimit()]) : undefined;
  // Then every worker's second heartbeat, which reconnects if the server closed the idle
  // connection meanwhile; measuring starts SETTLE_AFTER_STORM_MS after the last of them.
  let rejoined = 0;
  let rejoinResolve: (() => void) | undefined;
  const allRejoined = new Promise<void>((resolve) => (rejoinResolve = resolve));
  if (options.warmup === 'auto') {
    void allRejoined.then(() => {
      if (Number.isFinite(warmEnd)) return;
      warmEnd = Math.min(performance.now() + SETTLE_AFTER_STORM_MS, began + MAX_AUTO_WARMUP_MS);
      end = warmEnd + options.seconds * 1000;
    });
  }
  let cpuAtStart = 0;
  let cpuAtEnd = 0;
  const sampler = (async () => {
    if (options.warmup === 'auto') await Promise.race([allRejoined, warmupLimit()]);
    if (!Number.isFinite(warmEnd)) {
      warmEnd = began + MAX_AUTO_WARMUP_MS;
      end = warmEnd + options.seconds * 1000;
    }
    await sleep(Math.max(0, warmEnd - performance.now()));
    cpuAtStart = await processCpuMs(options.serverPid);
    await options.onMeasuring?.('start');
    await sleep(Math.max(0, end - performance.now()));
    cpuAtEnd = await processCpuMs(options.serverPid);
    await options.onMeasuring?.('end');
  })();
  await Promise.all(
    clients.map(async (client, i) => {
      const body = workers[i]!.body;
      let answers = 0;
      while (performance.now() < end) {
        const started = performance.now();
        try {
          const res = await client.request({
            method: 'POST',
            path: '/v1/heartbeat',
            headers: { 'content-type': 'application/json' },
            body,
            ...(options.reconnect && { reset: true }),
          });
          await res.body.dump();
          if (res.statusCode !== 200) throw new Error(`status ${res.statusCode}`);
          const now = performance.now();
          if (++answers === 1) {
            if (++answered === clients.length) {
              stormEnd = now;
              stormResolve?.();
            }
            if (stormOrLimit) await stormOrLimit;
          } else if (answers === 2 && ++rejoined === clients.length) rejoinResolve?.();
          // Sent in the window: counted when it is answered, however late (a stall shows in p99).
          if (started >= warmEnd && started <= end) {
            count++;
            latencies.push(now - started);
          }
        } catch (e: unknown) {
          // Counted: a refused or failed heartbeat is an error of the run, not of the bench.
          if (started >= warmEnd) errors++;
          firstError ??=
            e instanceof Error ? `${e.message} ${(e as { code?: string }).code ?? ''}` : String(e);
        }
      }
    }),
  );
  await sampler;
  // The warm-up limits' timers would keep the process alive for minutes after the run.
  limits.abort();
  if (Number.isFinite(stormEnd)) await stormCpu;
  if (!options.clients) await Promise.all(clients.map((c) => c.close()));
  return {
    count,
    errors,
    seconds: options.seconds,
    latenciesMs: latencies,
    serverCpuMs: cpuAtEnd - cpuAtStart,
    stormMs: stormEnd - began,
    warmupMs: warmEnd - began,
    stormServerCpuMs: cpuAtStorm - cpuAtBegin,
    stormClientCpuMs: clientCpuAtStorm - clientCpuAtBegin,
    stormListenOverflows: overflowsAtStorm - overflowsAtBegin,
    firstError,
  };
}

/** `n` hosts enrolled through a controller's admin API, each a simulated worker with its own certificate. */
export async function enrollSimulated(
  controller: { admin<T>(method: 'POST', path: string, body: unknown): Promise<T> },
  n: number,
): Promise<SimulatedWorker[]> {
  const workers: SimulatedWorker[] = [];
  for (let i = 0; i < n; i++) {
    const e = await controller.admin<EnrollResponse>('POST', '/v1/enroll', {
      name: `bench-${i}`,
      address: '127.0.0.1',
    });
    workers.push({
      material: { caPem: e.caPem, certPem: e.agent.certPem, keyPem: e.agent.keyPem },
      body: JSON.stringify(heartbeatRequest(e.hostId)),
    });
  }
  return workers;
}

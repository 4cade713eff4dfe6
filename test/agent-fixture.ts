import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, readdir, readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import Fastify from 'fastify';
import { pino } from 'pino';
import { Agent as Dispatcher, request } from 'undici';
import { createAgent, type Agent, type AgentOptions } from '../agent/index.js';
import {
  createCa,
  peerOfRequest,
  requirePeer,
  serverTlsOptions,
  signCsr,
  clientTlsOptions,
  writeBundle,
  type CertificateAuthority,
  type TlsMaterial,
} from '../pki/index.js';
import type { HeartbeatRequest, LifecycleEvent } from '../protocol/heartbeat.js';
import { parseWith } from '../protocol/validate.js';
import { HeartbeatRequest as HeartbeatSchema } from '../protocol/heartbeat.js';
import { RenewRequest } from '../protocol/enrollment.js';
import type { ProcessServiceSpec } from '../protocol/service-spec.js';

export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
export const silent = pino({ level: 'silent' });

export interface TestPki {
  readonly ca: CertificateAuthority & { keyPem: string };
  /** The controller's server identity (for the heartbeat stand-in). */
  readonly controllerServer: TlsMaterial;
  /** The pinned controller-client identity that may call agents. */
  readonly controllerClient: TlsMaterial & { fingerprint: string };
  issue(role: 'agent' | 'updater' | 'operator' | 'controller-client', hostId?: string): Promise<TlsMaterial>;
}

export async function makePki(): Promise<TestPki> {
  const ca = await createCa();
  const material = async (profile: Parameters<typeof ca.issue>[0]) => {
    const leaf = await ca.issue(profile);
    return { caPem: ca.certPem, certPem: leaf.certPem, keyPem: leaf.keyPem, fingerprint: leaf.fingerprint };
  };
  return {
    ca,
    controllerServer: await material({
      role: 'controller',
      commonName: 'controller',
      ipAddresses: ['127.0.0.1'],
    }),
    controllerClient: await material({ role: 'controller-client', commonName: 'controller-client' }),
    issue: (role, hostId) =>
      material({ role, commonName: `${role}-${hostId ?? 'x'}`, ...(hostId && { hostId }) }),
  };
}

export interface TestWorker {
  readonly stateDir: string;
  readonly hostId: string;
  readonly agentFingerprint: string;
}

/** A state dir with an enrolled bundle, as `corral controller enroll` + copying would leave it. */
export async function makeWorker(
  pki: TestPki,
  controller: string,
  o: { hostId?: string; stateDir?: string; agentNotAfter?: Date; updaterNotAfter?: Date } = {},
): Promise<TestWorker> {
  const stateDir = o.stateDir ?? (await mkdtemp(join(tmpdir(), 'corral-agent-')));
  const hostId = o.hostId ?? 'w1';
  const agent = await pki.ca.issue({
    role: 'agent',
    hostId,
    commonName: `worker-${hostId}`,
    ipAddresses: ['127.0.0.1'],
    ...(o.agentNotAfter && { notAfter: o.agentNotAfter }),
  });
  const updater = await pki.ca.issue({
    role: 'updater',
    hostId,
    commonName: `worker-${hostId}`,
    ...(o.updaterNotAfter && { notAfter: o.updaterNotAfter }),
  });
  await writeBundle(join(stateDir, 'bundle'), {
    caPem: pki.ca.certPem,
    manifest: {
      version: 1,
      hostId,
      hostName: `worker-${hostId}`,
      address: '127.0.0.1',
      agentPort: 0,
      updaterPort: 0,
      controller,
      controllerClientFingerprint: pki.controllerClient.fingerprint,
      caFingerprint: pki.ca.fingerprint,
    },
    identities: { agent, updater },
  });
  return { stateDir, hostId, agentFingerprint: agent.fingerprint };
}

/** Options that keep an in-process agent quick in tests. */
export function fastAgentOptions(worker: TestWorker, extra: Partial<AgentOptions> = {}): AgentOptions {
  return {
    stateDir: worker.stateDir,
    listen: { host: '127.0.0.1', port: 0 },
    version: '9.9.9-test',
    log: silent,
    logPollMs: 50,
    adoptPollMs: 50,
    defaultStopGraceMs: 2000,
    restart: { baseDelayMs: 20, maxDelayMs: 200, maxRestarts: 5, windowMs: 60_000 },
    heartbeat: { enabled: false },
    ...extra,
  };
}

export function startAgent(worker: TestWorker, extra: Partial<AgentOptions> = {}): Promise<Agent> {
  return createAgent(fastAgentOptions(worker, extra));
}

/** Calls an agent with a client identity; the agent's certificate is pinned. */
export function agentCaller(address: string, material: TlsMaterial, agentFingerprint: string) {
  const dispatcher = new Dispatcher({
    connect: clientTlsOptions(material, { roles: ['agent'], fingerprints: [agentFingerprint] }),
  });
  return {
    call: async <T = unknown>(
      method: 'GET' | 'POST',
      path: string,
      body?: unknown,
    ): Promise<{ status: number; body: T }> => {
      const res = await request(`https://${address}${path}`, {
        dispatcher,
        method,
        ...(body !== undefined && {
          body: JSON.stringify(body),
          headers: { 'content-type': 'application/json' },
        }),
      });
      const text = await res.body.text();
      return { status: res.statusCode, body: (text ? JSON.parse(text) : undefined) as T };
    },
    close: () => dispatcher.close(),
  };
}

/**
 * A controller stand-in: a real mTLS server implementing only POST /v1/heartbeat and
 * POST /v1/renew as protocol/ defines them, recording what it receives.
 */
export async function startControllerStandIn(pki: TestPki, o: { intervalMs?: number; port?: number } = {}) {
  const heartbeats: HeartbeatRequest[] = [];
  const events = new Map<string, LifecycleEvent>();
  let deliveries = 0;
  const renewals: { role: string; fingerprint: string }[] = [];
  const app = Fastify({ https: serverTlsOptions(pki.controllerServer) });
  app.addHook('onRequest', async (req) => {
    requirePeer(peerOfRequest(req.raw), { roles: ['agent'] });
  });
  app.post('/v1/heartbeat', async (req) => {
    const body = parseWith(HeartbeatSchema, req.body, 'heartbeat');
    heartbeats.push(body);
    for (const e of body.events) {
      deliveries++;
      events.set(e.id, e);
    }
    return {
      ackedEventIds: body.events.map((e) => e.id),
      intervalMs: o.intervalMs ?? 100,
      serverTime: new Date().toISOString(),
    };
  });
  app.post('/v1/renew', async (req) => {
    const body = parseWith(RenewRequest, req.body, 'renew');
    const peer = requirePeer(peerOfRequest(req.raw), { roles: ['agent'] });
    const issued = await signCsr(pki.ca, body.csrPem, {
      role: body.role,
      hostId: peer.hostId ?? 'x',
      commonName: 'renewed',
      ipAddresses: ['127.0.0.1'],
    });
    renewals.push({ role: body.role, fingerprint: issued.fingerprint });
    return {
      certPem: issued.certPem,
      fingerprint: issued.fingerprint,
      notAfter: issued.notAfter.toISOString(),
    };
  });
  await app.listen({ host: '127.0.0.1', port: o.port ?? 0 });
  const port = (app.server.address() as { port: number }).port;
  return {
    address: `127.0.0.1:${port}`,
    port,
    heartbeats,
    events,
    renewals,
    deliveries: () => deliveries,
    close: () => app.close(),
  };
}

/** Polls `fn` until it returns a truthy value; throws with `what` after `timeoutMs`. */
export async function waitFor<T>(
  what: string,
  fn: () => Promise<T> | T,
  timeoutMs = 20_000,
): Promise<NonNullable<T>> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await fn();
      if (v) return v;
    } catch (e: unknown) {
      last = e;
    }
    if (Date.now() > deadline)
      throw new Error(
        `timed out waiting for ${what}${last ? `: ${last instanceof Error ? last.message : JSON.stringify(last)}` : ''}`,
      );
    await sleep(50);
  }
}

export function sh(
  name: string,
  script: string,
  extra: Partial<ProcessServiceSpec> = {},
): ProcessServiceSpec {
  return {
    name,
    runtime: 'process',
    command: '/bin/sh',
    args: ['-c', script],
    env: {},
    restart: 'always',
    stopGraceMs: 2000,
    ...extra,
  };
}

/** Live (non-zombie) processes in process group `pgid`. */
export async function groupPids(pgid: number): Promise<number[]> {
  const out: number[] = [];
  for (const name of await readdir('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    const stat = await readFile(`/proc/${name}/stat`, 'utf8').catch(() => '');
    const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    if (Number(rest[2]) === pgid && rest[0] !== 'Z') out.push(Number(name));
  }
  return out;
}

/** SIGKILLs every service group a state dir records: test cleanup, never product code. */
export async function killServices(stateDir: string): Promise<void> {
  const dir = join(stateDir, 'services');
  for (const name of await readdir(dir).catch(() => [] as string[])) {
    const text = await readFile(join(dir, name, 'state.json'), 'utf8').catch(() => '');
    const pgid = text ? (JSON.parse(text) as { ref?: { pgid?: number } | null }).ref?.pgid : undefined;
    if (pgid && pgid > 1) {
      try {
        process.kill(-pgid, 'SIGKILL');
      } catch {
        // ESRCH: already gone
      }
    }
  }
}

/** Runs the built CLI (`npx tsc -p .` first) as a separate process. */
export function spawnCorral(args: string[]): ChildProcess & { output: () => string } {
  const child = spawn(process.execPath, [join(ROOT, 'bin', 'corral.js'), ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let text = '';
  child.stdout?.on('data', (d: Buffer) => (text += d.toString()));
  child.stderr?.on('data', (d: Buffer) => (text += d.toString()));
  return Object.assign(child, { output: () => text });
}

export function runCorral(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolvePromise) => {
    execFile(process.execPath, [join(ROOT, 'bin', 'corral.js'), ...args], (error, stdout, stderr) => {
      const code = error ? (typeof error.code === 'number' ? error.code : 1) : 0;
      resolvePromise({ code, stdout, stderr });
    });
  });
}

import { execFile } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { once } from 'node:events';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { pino } from 'pino';
import { Client, request } from 'undici';
import { clientTlsOptions, peerOfRequest, type TlsMaterial } from '../pki/index.js';
import { parseHostPort } from '../kit/host-port.js';
import type { EnrollResponse } from '../protocol/enrollment.js';
import type { HeartbeatRequest, LifecycleEvent } from '../protocol/heartbeat.js';
import {
  createController,
  initControllerState,
  loadControllerIdentity,
  openDatabase,
  openReadConnection,
  toDatabaseTarget,
  type Clock,
  type Controller,
  type ControllerDb,
  type ControllerOptions,
  type ControllerEndpoints,
  type ControllerIdentity,
} from '../controller/index.js';
import { dropSharedDatabase, newSharedDatabase } from './test-database.js';

/**
 * A real controller on loopback, port 0, with a real SQLite file in a temp dir, or (given
 * `database`, or by default under CORRAL_TEST_DATABASE=postgres) a PostgreSQL database.
 */
export interface TestController extends AsyncDisposable {
  readonly dir: string;
  /** The PostgreSQL URL it runs on, or undefined on the state dir's SQLite file. */
  readonly databaseUrl: string | undefined;
  readonly controller: Controller;
  readonly endpoints: ControllerEndpoints;
  readonly identity: ControllerIdentity;
  readonly db: ControllerDb;
  readonly adminToken: string;
  admin<T = unknown>(
    method: string,
    path: string,
    body?: unknown,
    token?: string | null,
  ): Promise<{ status: number; body: T }>;
  enroll(name: string, extra?: Record<string, unknown>): Promise<EnrollResponse>;
  close(): Promise<void>;
}

export const silentLog = pino({ level: process.env.CORRAL_TEST_LOG ?? 'silent' });
const execFileAsync = promisify(execFile);

/**
 * The shared-cluster database of each state dir a controller was started on, so a
 * controller started again on the same dir (`dir: t.dir`) finds its data, as it would in its
 * SQLite file.
 */
const sharedDatabaseOfDir = new Map<string, string>();

/**
 * The database a controller without `database` gets: none (its state dir's SQLite file), or
 * under CORRAL_TEST_DATABASE=postgres a fresh copy of the shared cluster's template, the
 * same one again for a state dir seen before.
 */
async function defaultDatabase(dir: string): Promise<string | undefined> {
  const known = sharedDatabaseOfDir.get(dir);
  if (known !== undefined) return known;
  const url = await newSharedDatabase();
  if (url !== undefined) sharedDatabaseOfDir.set(dir, url);
  return url;
}

/**
 * `--database URL` for a `corral controller …` child process on a test controller's state
 * dir, when it runs on PostgreSQL (the state dir records only that it is PostgreSQL).
 */
export const databaseArgs = (t: Pick<TestController, 'databaseUrl'>): string[] =>
  t.databaseUrl === undefined ? [] : ['--database', t.databaseUrl];

export async function startController(
  options: {
    heartbeatIntervalMs?: number;
    decommissionWaitMs?: number;
    dir?: string;
    clock?: Clock;
    heartbeatBudget?: ControllerOptions['heartbeatBudget'];
    eventRetention?: ControllerOptions['eventRetention'];
    fleetEvents?: ControllerOptions['fleetEvents'];
    schedule?: ControllerOptions['schedule'];
    /** Deploy dispatch and health gate (default: no gate; the gate's own tests turn it on). */
    deploy?: ControllerOptions['deploy'];
    adminTls?: ControllerOptions['adminTls'];
    approvals?: ControllerOptions['approvals'];
    backups?: ControllerOptions['backups'];
    /** The built dashboard to serve at `/` (dist/ui); none by default. */
    dashboardDir?: string;
    /** Where the admin API listens (default 127.0.0.1). */
    adminHost?: string;
    /** Addresses for init (they go into the server certificate). */
    addresses?: readonly string[];
    /**
     * The database (`postgres://…`; default: the state dir's SQLite file, or under
     * CORRAL_TEST_DATABASE=postgres a database of its own in the run's shared cluster).
     */
    database?: string;
  } = {},
): Promise<TestController> {
  const dir = options.dir ?? (await mkdtemp(join(tmpdir(), 'corral-ctl-')));
  const url = options.database ?? (await defaultDatabase(dir));
  const database = url === undefined ? undefined : toDatabaseTarget(url);
  await initControllerState({
    stateDir: dir,
    ...(options.addresses && { addresses: options.addresses }),
    ...(database && { database }),
  });
  const identity = await loadControllerIdentity(dir);
  const target = database ?? identity.paths.database;
  const db = await openDatabase(target);
  // Admin reads on their own read-only connection, as `controller serve` runs them.
  const readDb = await openReadConnection(target);
  const controller = await createController({
    db,
    readDb,
    database,
    identity,
    log: silentLog,
    heartbeatIntervalMs: options.heartbeatIntervalMs,
    decommissionWaitMs: options.decommissionWaitMs ?? 2_000,
    clock: options.clock,
    heartbeatBudget: options.heartbeatBudget,
    eventRetention: options.eventRetention,
    fleetEvents: options.fleetEvents,
    schedule: options.schedule,
    deploy: { minHealthyMs: 0, ...options.deploy },
    adminTls: options.adminTls,
    approvals: options.approvals,
    dashboardDir: options.dashboardDir,
    backups: options.backups,
  });
  const loopback = { host: '127.0.0.1', port: 0 };
  const endpoints = await controller.listen({
    admin: { host: options.adminHost ?? '127.0.0.1', port: 0 },
    worker: loopback,
    join: loopback,
  });
  const adminToken = (await readFile(identity.paths.adminToken, 'utf8')).trim();

  async function admin<T>(method: string, path: string, body?: unknown, token: string | null = adminToken) {
    const headers: Record<string, string> = {};
    if (token !== null) headers.authorization = `Bearer ${token}`;
    if (body !== undefined) headers['content-type'] = 'application/json';
    const res = await request(`${endpoints.admin}${path}`, {
      method: method as 'GET',
      headers,
      body: body === undefined ? null : JSON.stringify(body),
    });
    const text = await res.body.text();
    const parsed = (res.headers['content-type'] ?? '').toString().includes('json') ? JSON.parse(text) : text;
    return { status: res.statusCode, body: parsed as T };
  }

  let closed = false;
  const close = async (): Promise<void> => {
    if (closed) return;
    closed = true;
    await controller.close();
    await readDb.destroy();
    await db.destroy();
    if (!options.dir) {
      // Its state dir goes, and with it its database (a controller started again on this
      // dir meanwhile has closed first, as `await using` closes in reverse).
      await rm(dir, { recursive: true, force: true });
      const shared = sharedDatabaseOfDir.get(dir);
      sharedDatabaseOfDir.delete(dir);
      if (shared !== undefined && shared === url) await dropSharedDatabase(shared);
    }
  };
  return {
    dir,
    databaseUrl: database?.kind === 'postgres' ? database.url : undefined,
    controller,
    endpoints,
    identity,
    db,
    adminToken,
    admin,
    async enroll(name, extra = {}) {
      const res = await admin<EnrollResponse>('POST', '/v1/enroll', { name, address: '127.0.0.1', ...extra });
      if (res.status !== 200) throw new Error(`enroll ${name}: ${res.status} ${JSON.stringify(res.body)}`);
      return res.body;
    },
    close,
    [Symbol.asyncDispose]: close,
  };
}

/** The agent identity of an enrollment, as TLS material. */
export function agentMaterial(enrolled: EnrollResponse): TlsMaterial {
  return { caPem: enrolled.caPem, certPem: enrolled.agent.certPem, keyPem: enrolled.agent.keyPem };
}

/** A persistent (keep-alive) mTLS client to the worker API, as an agent holds one. */
export function workerClient(
  endpoint: string,
  material: Partial<TlsMaterial> & { caPem: string },
): Client & AsyncDisposable {
  const { host, port } = parseHostPort(endpoint);
  const tls = clientTlsOptions(
    { caPem: material.caPem, certPem: material.certPem ?? '', keyPem: material.keyPem ?? '' },
    { roles: ['controller'] },
  );
  const connect: Record<string, unknown> = { ...tls, servername: 'localhost' };
  if (!material.certPem) {
    delete connect.cert;
    delete connect.key;
  }
  const client = new Client(`https://${host}:${port}`, { connect, pipelining: 1 });
  return Object.assign(client, { [Symbol.asyncDispose]: () => client.destroy() });
}

export function heartbeatBody(hostId: string, overrides: Partial<HeartbeatRequest> = {}): HeartbeatRequest {
  return {
    hostId,
    agentVersion: '0.1.0',
    generation: 0,
    metrics: {
      load1: 0.5,
      load5: 0.4,
      load15: 0.3,
      memTotalBytes: 8e9,
      memAvailableBytes: 4e9,
      diskTotalBytes: 1e11,
      diskFreeBytes: 5e10,
      uptimeSeconds: 1234,
    },
    services: [],
    events: [],
    ...overrides,
  };
}

export function lifecycleEvent(overrides: Partial<LifecycleEvent> = {}): LifecycleEvent {
  return { id: randomUUID(), type: 'agent-started', time: new Date().toISOString(), ...overrides };
}

export async function postJson(
  client: Client,
  path: string,
  body: unknown,
): Promise<{
  status: number;
  body: { error?: { code: string; message: string } } & Record<string, unknown>;
}> {
  const res = await client.request({
    method: 'POST',
    path,
    headers: { 'content-type': 'application/json' },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  });
  const text = await res.body.text();
  return { status: res.statusCode, body: text ? JSON.parse(text) : {} };
}

/** Polls `check` until it returns true or the time runs out (for conditions, never for timing). */
export async function waitFor(check: () => Promise<boolean> | boolean, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 25));
  }
}

export interface StandInAgentCall {
  readonly method: string;
  readonly path: string;
  readonly body: unknown;
  /** Role and fingerprint of the client certificate the caller presented. */
  readonly peer: { role: string | undefined; fingerprint: string } | undefined;
}

/**
 * A stand-in for a worker's agent API (GET /v1/health, POST /v1/self-destruct) over real
 * mutual TLS, armed with a certificate after the host is enrolled (the port is needed first).
 * Stands in for `corral agent serve`, which these controller tests do not depend on.
 */
export async function standInAgent(): Promise<{
  readonly port: number;
  readonly calls: StandInAgentCall[];
  arm(material: TlsMaterial, hostId: string): void;
  close(): Promise<void>;
}> {
  const calls: StandInAgentCall[] = [];
  let hostId = '';
  const server = createHttpsServer(
    { requestCert: true, rejectUnauthorized: true, minVersion: 'TLSv1.2' },
    (req, res) => {
      let body = '';
      req.setEncoding('utf8');
      req.on('data', (c: string) => (body += c));
      req.on('end', () => {
        const id = peerOfRequest(req);
        calls.push({
          method: req.method ?? '',
          path: req.url ?? '',
          body: body ? JSON.parse(body) : undefined,
          peer: id ? { role: id.role, fingerprint: id.fingerprint } : undefined,
        });
        res.setHeader('content-type', 'application/json');
        if (req.method === 'GET' && req.url === '/v1/health') {
          res.end(JSON.stringify({ version: '9.9.9', hostId, uptimeSeconds: 12 }));
        } else if (req.method === 'POST' && req.url === '/v1/self-destruct') {
          res.statusCode = 202;
          res.end(JSON.stringify({ operationId: randomUUID(), hostId, startedAt: new Date().toISOString() }));
        } else {
          res.statusCode = 404;
          res.end('{}');
        }
      });
    },
  );
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return {
    port: (server.address() as AddressInfo).port,
    calls,
    arm(material, id) {
      hostId = id;
      server.setSecureContext({ ca: material.caPem, cert: material.certPem, key: material.keyPem });
    },
    async close() {
      server.closeAllConnections();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');

/** Runs the built `corral` binary as a user would; never throws, returns code and output. */
export async function corral(
  args: string[],
  env: Record<string, string> = {},
): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await execFileAsync(
      process.execPath,
      [join(ROOT, 'bin', 'corral.js'), ...args],
      {
        env: { ...process.env, ...env },
      },
    );
    return { code: 0, stdout, stderr };
  } catch (e: unknown) {
    const err = e as { code?: number; stdout?: string; stderr?: string };
    return { code: err.code ?? 1, stdout: err.stdout ?? '', stderr: err.stderr ?? '' };
  }
}

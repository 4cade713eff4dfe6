/**
 * Shared fixtures for the updater tests and the update benchmark: worker bundles minted with
 * our own pki/, releases packed with `release pack` whose start command runs a small real
 * program shipped in the release (the *stand-in agent*: it answers the agent's local health
 * socket with the version the updater gave it), and updaters run in-process or as real
 * `corral updater serve` child processes.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import { pino } from 'pino';
import { packRelease } from '../controller/release/pack.js';
import {
  createCa,
  identityFromPem,
  loadBundle,
  writeBundle,
  type CertificateAuthority,
  type TlsMaterial,
} from '../pki/index.js';
import { AGENT_HEALTH_SOCKET, type AgentLocalHealth } from '../protocol/index.js';
import { parseHostPort } from '../kit/host-port.js';
import { readEndpointsFile } from '../kit/endpoints-file.js';
import { createUpdater, type Updater, type UpdaterOptions } from '../updater/index.js';
import { probeOnce } from '../updater/health-probe.js';
import type { UpdaterTarget } from '../controller/release/push.js';

/** The checkout: the nearest folder above this file with a package.json (works from dist/ too). */
function repoRoot(): string {
  let d = dirname(fileURLToPath(import.meta.url));
  while (!existsSync(join(d, 'package.json')) && dirname(d) !== d) d = dirname(d);
  return d;
}
export const ROOT = repoRoot();
export const CORRAL_BIN = join(ROOT, 'bin', 'corral.js');

/**
 * `crash-later`: healthy at first, then exits with code 4 after CRASH_LATER_MS.
 * `unhealthy-later`: healthy at first, then stops answering health after CRASH_LATER_MS but keeps running.
 */
export type StandInMode = 'good' | 'crash' | 'silent' | 'wrong-version' | 'crash-later' | 'unhealthy-later';
/** When the `*-later` stand-ins go bad after they started answering health, in ms. */
export const CRASH_LATER_MS = 3000;

/** The stand-in agent: a real program, shipped inside each test release. */
export const STAND_IN_AGENT = `// Stand-in for the corral agent binary (tests only): serves GET /v1/health on the
// agent's local socket with the release version the updater passed in the environment.
import { createServer } from 'node:http';
import { mkdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
const [stateDir, mode = 'good'] = process.argv.slice(2);
const version = process.env.CORRAL_RELEASE_VERSION;
process.on('SIGTERM', () => process.exit(0));
if (mode === 'crash') {
  console.error('stand-in agent ' + version + ': configuration missing, exiting');
  process.exit(3);
}
if (mode === 'silent') {
  console.log('stand-in agent ' + version + ': starting, never healthy');
  setInterval(() => {}, 1000);
} else {
  const sock = join(stateDir, ${JSON.stringify(AGENT_HEALTH_SOCKET)});
  mkdirSync(join(sock, '..'), { recursive: true });
  rmSync(sock, { force: true });
  const started = Date.now();
  const server = createServer((req, res) => {
    req.resume();
    if (req.url !== '/v1/health') { res.statusCode = 404; res.end(); return; }
    res.setHeader('content-type', 'application/json');
    res.end(JSON.stringify({
      version: mode === 'wrong-version' ? '0.0.0-elsewhere' : version,
      pid: process.pid,
      uptimeSeconds: (Date.now() - started) / 1000,
    }));
  }).listen(sock, () => console.log('stand-in agent ' + version + ' healthy'));
  if (mode === 'crash-later') {
    setTimeout(() => {
      console.error('stand-in agent ' + version + ': lost its database connection, exiting');
      process.exit(4);
    }, ${CRASH_LATER_MS});
  }
  if (mode === 'unhealthy-later') {
    setTimeout(() => {
      console.error('stand-in agent ' + version + ': wedged, no longer answering');
      server.close();
      server.closeAllConnections();
      setInterval(() => {}, 1000);
    }, ${CRASH_LATER_MS});
  }
}
`;

export async function tempDir(prefix: string): Promise<string> {
  return mkdtemp(join(tmpdir(), `corral-${prefix}-`));
}

export interface Fleet {
  readonly ca: CertificateAuthority & { keyPem: string };
  /** The pinned controller-client identity. */
  readonly controllerClient: TlsMaterial;
}

export async function createFleet(): Promise<Fleet> {
  const ca = await createCa();
  const client = await ca.issue({ role: 'controller-client', commonName: 'controller-client' });
  return { ca, controllerClient: { caPem: ca.certPem, certPem: client.certPem, keyPem: client.keyPem } };
}

export interface Worker {
  readonly name: string;
  readonly stateDir: string;
  readonly root: string;
  readonly updaterFingerprint: string;
}

/** Writes a worker bundle (updater identity pinned to the fleet's controller-client) under `dir`. */
export async function createWorker(fleet: Fleet, dir: string, name = 'w-1'): Promise<Worker> {
  const updater = await fleet.ca.issue({
    role: 'updater',
    hostId: name,
    commonName: name,
    dnsNames: ['localhost'],
    ipAddresses: ['127.0.0.1'],
  });
  const stateDir = join(dir, 'state');
  await writeBundle(join(stateDir, 'bundle'), {
    caPem: fleet.ca.certPem,
    manifest: {
      version: 1,
      hostId: name,
      hostName: name,
      address: '127.0.0.1',
      agentPort: 0,
      updaterPort: 0,
      controller: '127.0.0.1:8771',
      controllerClientFingerprint: identityFromPem(fleet.controllerClient.certPem).fingerprint,
      caFingerprint: fleet.ca.fingerprint,
    },
    identities: { updater: { certPem: updater.certPem, keyPem: updater.keyPem } },
  });
  return { name, stateDir, root: join(dir, 'root'), updaterFingerprint: updater.fingerprint };
}

export interface BuiltRelease {
  readonly file: string;
  readonly version: string;
  readonly sha256: string;
  readonly bytes: number;
}

/** Packs a release whose agent is the stand-in in `mode`, plus `padBytes` of random payload. */
export async function buildRelease(
  dir: string,
  version: string,
  mode: StandInMode = 'good',
  options: { padBytes?: number; updater?: { command: string; args: string[] } } = {},
): Promise<BuiltRelease> {
  const src = join(dir, `src-${version}-${mode}`);
  await mkdir(join(src, 'bin'), { recursive: true });
  await writeFile(join(src, 'bin', 'stand-in-agent.mjs'), STAND_IN_AGENT, { mode: 0o755 });
  const include = ['bin'];
  if (options.padBytes) {
    await writeFile(join(src, 'payload.bin'), randomBytes(options.padBytes));
    include.push('payload.bin');
  }
  await writeFile(
    join(src, 'corral-release.json'),
    JSON.stringify({
      start: {
        command: process.execPath,
        args: ['${release}/bin/stand-in-agent.mjs', '${agentStateDir}', mode],
      },
      ...(options.updater ? { updater: options.updater } : {}),
      include,
    }),
  );
  const out = join(dir, `release-${version}-${mode}.tar.gz`);
  const packed = await packRelease({ dir: src, version, out });
  return { file: out, version, sha256: packed.sha256, bytes: packed.bytes };
}

export const quietLog = pino({ level: process.env.CORRAL_TEST_LOG ?? 'silent' });

/** Starts an updater in this process for `worker` (port 0 on loopback). */
export async function startUpdater(worker: Worker, options: Partial<UpdaterOptions> = {}): Promise<Updater> {
  const bundle = await loadBundle(join(worker.stateDir, 'bundle'));
  const identity = bundle.identities.updater!;
  return createUpdater({
    root: worker.root,
    stateDir: worker.stateDir,
    agentStateDir: join(worker.stateDir, 'agent'),
    tls: { caPem: bundle.caPem, certPem: identity.certPem, keyPem: identity.keyPem },
    controllerClientFingerprint: bundle.manifest.controllerClientFingerprint,
    listen: { host: '127.0.0.1', port: 0 },
    env: { PATH: process.env.PATH },
    updaterVersion: '0.1.0',
    log: quietLog,
    healthTimeoutMs: 20_000,
    healthIntervalMs: 50,
    // Short, so tests stay fast; tests of the watch itself set their own.
    watchMs: 300,
    agentStopTimeoutMs: 5000,
    ...options,
  });
}

export function target(worker: Worker, port: number): UpdaterTarget {
  return {
    hostName: worker.name,
    address: '127.0.0.1',
    updaterPort: port,
    updaterFingerprint: worker.updaterFingerprint,
  };
}

/** What the agent's health socket reports right now, or undefined. */
export async function agentHealth(worker: Worker): Promise<AgentLocalHealth | undefined> {
  const r = await probeOnce(join(worker.stateDir, 'agent', AGENT_HEALTH_SOCKET));
  return r.ok ? r.health : undefined;
}

/** The version the agent's health socket reports right now, or undefined. */
export async function agentVersion(worker: Worker): Promise<string | undefined> {
  return (await agentHealth(worker))?.version;
}

/** Polls `check` until it returns a value other than undefined (bounded). */
export async function until<T>(
  check: () => Promise<T | undefined>,
  what: string,
  timeoutMs = 30_000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(50);
  }
}

export interface UpdaterProcess {
  readonly child: ChildProcess;
  readonly port: number;
  output(): string;
  /**
   * The output once it has been quiet for a moment (at most 10 s): the updater writes its
   * endpoints file before it prints its start-up warnings, and a pipe is read later still.
   */
  settledOutput(): Promise<string>;
  /** SIGTERM and wait for exit. */
  stop(): Promise<void>;
}

/** Runs `corral updater serve` for `worker` as a real child process and waits until it listens. */
export async function spawnUpdater(
  worker: Worker,
  options: { env?: Record<string, string>; listen?: string; extraArgs?: string[] } = {},
): Promise<UpdaterProcess> {
  await rm(join(worker.stateDir, 'run', 'endpoints.json'), { force: true });
  const child = spawn(
    process.execPath,
    [
      CORRAL_BIN,
      'updater',
      'serve',
      '--state-dir',
      worker.stateDir,
      '--root',
      worker.root,
      '--agent-state-dir',
      join(worker.stateDir, 'agent'),
      '--listen',
      options.listen ?? '127.0.0.1:0',
      '--health-timeout',
      '20000ms',
      '--watch',
      '300ms',
      ...(options.extraArgs ?? []),
    ],
    { env: { ...process.env, ...options.env }, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let output = '';
  const keep = (c: Buffer): void => {
    output = (output + c.toString('utf8')).slice(-64 * 1024);
  };
  child.stdout?.on('data', keep);
  child.stderr?.on('data', keep);
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  let endpoint: string;
  try {
    endpoint = await until(
      async () => {
        if (child.exitCode !== null) throw new Error(`updater exited early: ${output}`);
        return (await readEndpointsFile(worker.stateDir).catch(() => undefined))?.updater;
      },
      'the updater to listen',
      60_000,
    );
  } catch (e: unknown) {
    child.kill('SIGKILL');
    throw e;
  }
  return {
    child,
    port: parseHostPort(endpoint).port,
    output: () => output,
    async settledOutput() {
      const deadline = Date.now() + 10_000;
      let seen = output;
      let quietSince = Date.now();
      while (Date.now() < deadline && Date.now() - quietSince < 500) {
        await sleep(50);
        if (output !== seen) [seen, quietSince] = [output, Date.now()];
      }
      return output;
    },
    async stop() {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
      await exited;
    },
  };
}

/** The pid file of the agent a harness updater runs (its agent state dir is STATE/agent). */
export const agentPidFile = (worker: Worker): string => join(worker.stateDir, 'agent', 'run', 'agent.pid');

/** Kills whatever agent the worker's updater last started (cleanup after a kill -9). */
export async function killRecordedAgent(worker: Worker): Promise<void> {
  try {
    const { pid } = JSON.parse(await readFile(agentPidFile(worker), 'utf8')) as { pid: number };
    process.kill(pid, 'SIGKILL');
  } catch (e: unknown) {
    void e; // no agent recorded, or it is already gone
  }
}

import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createAgent, type Agent } from '../agent/index.js';
import { writeBundle } from '../pki/index.js';
import type {
  DeploymentProcessService,
  DeploymentService,
  DeploymentSpec,
  ServiceView,
} from '../protocol/deployment.js';
import { fastAgentOptions, killServices } from './agent-fixture.js';
import type { TestController } from './controller-fixture.js';
import { freePort } from './rsyslog-fixtures.js';

/**
 * Real agents for deploy tests: enrolled through the controller's own admin API (so the pins
 * are the controller's), listening on the port they were enrolled with, heartbeating to its
 * worker API. The controller's liveness interval is long (a host stays `online` for a while
 * after its agent stops) while the agents beat every ~100 ms (their own cap), so observed state
 * arrives fast and a stopped agent is still a placement candidate, as in a real outage.
 */
export const LIVENESS_INTERVAL_MS = 10_000;
const FAST_BEATS = {
  intervalMs: 100,
  minIntervalMs: 20,
  maxIntervalMs: 120,
  backoffBaseMs: 20,
  backoffCapMs: 200,
};

export interface FleetWorker {
  readonly name: string;
  readonly hostId: string;
  readonly stateDir: string;
  readonly port: number;
  readonly agentFingerprint: string;
  agent(): Agent | undefined;
  start(): Promise<Agent>;
  /** Stops the agent; its services keep running (as when an agent dies). */
  stop(): Promise<void>;
  /** Stops the agent, kills its services, removes its state dir. */
  destroy(): Promise<void>;
}

export async function addWorker(
  t: TestController,
  name: string,
  o: { labels?: Record<string, string>; start?: boolean } = {},
): Promise<FleetWorker> {
  const port = await freePort();
  const enrolled = await t.enroll(name, { agentPort: port, ...(o.labels && { labels: o.labels }) });
  const stateDir = await mkdtemp(join(tmpdir(), `corral-deploy-${name}-`));
  await writeBundle(join(stateDir, 'bundle'), {
    caPem: enrolled.caPem,
    manifest: enrolled.manifest,
    identities: {
      agent: { certPem: enrolled.agent.certPem, keyPem: enrolled.agent.keyPem },
      updater: { certPem: enrolled.updater.certPem, keyPem: enrolled.updater.keyPem },
    },
  });
  let agent: Agent | undefined;
  const worker: FleetWorker = {
    name,
    hostId: enrolled.hostId,
    stateDir,
    port,
    agentFingerprint: enrolled.agent.fingerprint,
    agent: () => agent,
    async start() {
      agent = await createAgent(
        fastAgentOptions(
          { stateDir, hostId: enrolled.hostId, agentFingerprint: enrolled.agent.fingerprint },
          { listen: { host: '127.0.0.1', port }, heartbeat: FAST_BEATS },
        ),
      );
      return agent;
    },
    async stop() {
      await agent?.close();
      agent = undefined;
    },
    async destroy() {
      await worker.stop();
      await killServices(stateDir);
      await rm(stateDir, { recursive: true, force: true });
    },
  };
  if (o.start !== false) await worker.start();
  return worker;
}

/** A long-running shell service. */
export function svc(name: string, extra: Partial<DeploymentProcessService> = {}): DeploymentProcessService {
  return {
    name,
    command: '/bin/sh',
    args: ['-c', 'exec sleep 300'],
    restart: 'always',
    stopGraceMs: 1000,
    ...extra,
  };
}

export const spec = (...services: DeploymentService[]): DeploymentSpec => ({ services });

export async function servicesOf(t: TestController, query = ''): Promise<ServiceView[]> {
  const res = await t.admin<{ services: ServiceView[] }>('GET', `/v1/services${query}`);
  if (res.status !== 200) throw new Error(`services: ${res.status} ${JSON.stringify(res.body)}`);
  return res.body.services;
}

/** `service@host=observed` for every row, sorted: compact to compare. */
export const observedMap = (views: readonly ServiceView[]): Record<string, string> =>
  Object.fromEntries(views.map((v) => [`${v.service}@${v.host}`, v.observed]));

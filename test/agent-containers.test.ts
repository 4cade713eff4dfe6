import { once } from 'node:events';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { AgentStatus } from '../protocol/agent-api.js';
import type { ServiceStatus } from '../protocol/heartbeat.js';
import type { ContainerServiceSpec } from '../protocol/service-spec.js';
import pino from 'pino';
import { createSyslogListener } from '../controller/syslog/index.js';
import { readEndpointsFile } from '../kit/endpoints-file.js';
import {
  agentCaller,
  killServices,
  makePki,
  makeWorker,
  runCorral,
  sh,
  spawnCorral,
  startControllerStandIn,
  waitFor,
  type TestPki,
  type TestWorker,
} from './agent-fixture.js';
import { podmanUnavailable, startPodman, TEST_IMAGE, type Podman } from './podman-fixture.js';

/**
 * Container services on a private podman engine, with the agent as a process of its own (the
 * built CLI, `npx tsc -p .` first) so it can be killed -9. One engine for the whole file.
 */
const unavailable = await podmanUnavailable();

let pki: TestPki;
let worker: TestWorker;
let standIn: Awaited<ReturnType<typeof startControllerStandIn>>;
let podman: Podman;
let volumes: string;
let webPort: number;
const children: ReturnType<typeof spawnCorral>[] = [];

async function freePort(): Promise<number> {
  const server = createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const port = (server.address() as { port: number }).port;
  server.close();
  return port;
}

function container(name: string, extra: Partial<ContainerServiceSpec> = {}): ContainerServiceSpec {
  return {
    name,
    runtime: 'container',
    image: TEST_IMAGE,
    pull: 'never',
    env: {},
    restart: 'always',
    stopGraceMs: 1000,
    ...extra,
  };
}

function serve() {
  const child = spawnCorral([
    'agent',
    'serve',
    '--state-dir',
    worker.stateDir,
    '--listen',
    '127.0.0.1:0',
    '--heartbeat-interval',
    '200ms',
    '--heartbeat-min-interval',
    '50ms',
    '--adopt-poll',
    '200ms',
    '--log-poll',
    '100ms',
    '--restart-base',
    '50ms',
    '--max-restarts',
    '2',
    '--log-level',
    'warn',
    '--no-systemd',
    '--container-socket',
    podman.socket,
    '--volume-dir',
    volumes,
  ]);
  children.push(child);
  return child;
}

async function addressOf(child: ReturnType<typeof spawnCorral>, previous?: string): Promise<string> {
  return waitFor(`agent ${child.pid} listening (${child.output()})`, async () => {
    const lock = await readFile(join(worker.stateDir, 'run/agent.pid'), 'utf8').catch(() => '');
    if (!lock.includes(`"pid":${child.pid}`)) return undefined;
    const agent = (await readEndpointsFile(worker.stateDir))?.agent;
    return agent !== previous ? agent : undefined;
  });
}

beforeAll(async () => {
  if (unavailable) return;
  podman = await startPodman();
  pki = await makePki();
  standIn = await startControllerStandIn(pki, { intervalMs: 200 });
  worker = await makeWorker(pki, standIn.address, { hostId: 'cont-1' });
  volumes = await mkdtemp(join(tmpdir(), 'corral-vols-'));
  await mkdir(join(volumes, 'www'));
  await writeFile(join(volumes, 'www/index.html'), 'hello from a container\n');
  webPort = await freePort();
}, 180_000);

afterAll(async () => {
  if (unavailable) return;
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  await killServices(worker.stateDir);
  await podman.close();
  await standIn.close();
  await rm(worker.stateDir, { recursive: true, force: true });
  await rm(volumes, { recursive: true, force: true });
}, 120_000);

describe.skipIf(unavailable !== undefined)(`container services (${unavailable ?? 'private podman'})`, () => {
  let agent: ReturnType<typeof spawnCorral>;
  let address: string;
  let c: ReturnType<typeof agentCaller>;
  const status = async (): Promise<AgentStatus> => (await c.call<AgentStatus>('GET', '/v1/status')).body;
  const service = async (name: string): Promise<ServiceStatus | undefined> =>
    (await status()).services.find((s) => s.name === name);

  const web = () =>
    container('web', {
      command: '/bin/httpd',
      args: ['-f', '-p', '8080', '-h', '/www'],
      ports: [`127.0.0.1:${webPort}:8080/tcp`],
      volumes: [`${join(volumes, 'www')}:/www:ro`],
      healthCheck: { type: 'tcp', host: '127.0.0.1', port: webPort, intervalMs: 200 },
    });
  const talker = () =>
    container('talker', {
      command: '/bin/sh',
      args: ['-c', 'echo "talker says hello"; echo "talker complains" >&2; exec sleep 300'],
    });
  const side = () => sh('side', 'exec sleep 300');

  it('runs a container service and a process service side by side; the published port answers', async () => {
    agent = serve();
    address = await addressOf(agent);
    c = agentCaller(address, pki.controllerClient, worker.agentFingerprint);
    const res = await c.call('POST', '/v1/apply', { generation: 1, services: [web(), talker(), side()] });
    expect(res.status).toBe(202);
    const st = await waitFor('web, talker and side running', async () => {
      const s = await status();
      const ok = ['web', 'talker', 'side'].every(
        (n) => s.services.find((x) => x.name === n)?.state === 'running',
      );
      return ok ? s : undefined;
    });
    const w = st.services.find((s) => s.name === 'web');
    expect(w).toMatchObject({ runtime: 'container', image: TEST_IMAGE });
    expect(w?.containerId).toMatch(/^[0-9a-f]{64}$/);
    expect(st.services.find((s) => s.name === 'side')).toMatchObject({ runtime: 'process' });
    expect(st.services.find((s) => s.name === 'side')?.pid).toBeGreaterThan(1);
    // The heartbeat carries the same, for `controller services` and `controller host`.
    await waitFor('web container id in a heartbeat', () =>
      standIn.heartbeats.some((h) =>
        h.services.some(
          (s) => s.name === 'web' && s.image === TEST_IMAGE && s.containerId === w?.containerId,
        ),
      ),
    );

    const page = await request(`http://127.0.0.1:${webPort}/index.html`);
    expect(page.statusCode).toBe(200);
    expect(await page.body.text()).toBe('hello from a container\n');

    // One container per service, carrying Corral's labels.
    expect(await podman.running('io.corral.service=web')).toEqual([w?.containerId]);
    const labels = JSON.parse(
      await podman.cli(['inspect', '--format', '{{json .Config.Labels}}', w?.containerId ?? '']),
    ) as Record<string, string>;
    expect(labels['io.corral.managed']).toBe('true');
    expect(labels['io.corral.agent-instance']).toMatch(/^[0-9a-f]{24}$/);
    expect(labels['io.corral.spec-hash']).toMatch(/^[0-9a-f]{64}$/);
  });

  it('ships stdout and stderr to the worker log as RFC 5424 lines named for the service', async () => {
    const log = join(worker.stateDir, 'logs/worker.log');
    const lines = await waitFor('talker lines in the worker log', async () => {
      const text = await readFile(log, 'utf8').catch(() => '');
      const mine = text.split('\n').filter((l) => / talker \S+ (stdout|stderr) /.test(l));
      return mine.length >= 2 ? mine : undefined;
    });
    expect(lines.find((l) => l.includes(' stdout '))).toMatch(/^<\d+>1 \S+ \S+ talker .* talker says hello$/);
    expect(lines.find((l) => l.includes(' stderr '))).toMatch(/^<\d+>1 \S+ \S+ talker .* talker complains$/);
  });

  it('logs arrive at the controller named for the service: the forwarder ships the worker log to a listener', async () => {
    const ingest = await mkdtemp(join(tmpdir(), 'corral-ingest-'));
    const hostName = `worker-${worker.hostId}`;
    const listener = createSyslogListener({
      tls: pki.controllerServer,
      logDir: ingest,
      pins: {
        lookup: (fp) => (fp === worker.agentFingerprint ? { hostId: worker.hostId, hostName } : undefined),
        onRevoked: () => () => undefined,
      },
      log: pino({ level: 'silent' }),
    });
    const forwarder = await listener.listen('127.0.0.1', 0).then(({ port }) => {
      const child = spawnCorral([
        'forwarder',
        'run',
        '--state-dir',
        worker.stateDir,
        '--controller',
        `127.0.0.1:${port}`,
        '--poll-interval',
        '50ms',
        '--log-level',
        'warn',
      ]);
      children.push(child);
      return child;
    });
    try {
      const lines = await waitFor('talker lines at the listener', async () => {
        const text = await readFile(join(ingest, `${hostName}.${worker.hostId}.log`), 'utf8').catch(() => '');
        const mine = text.split('\n').filter((l) => / talker \S+ (stdout|stderr) /.test(l));
        return mine.length >= 2 ? mine : undefined;
      }).catch(async (e: unknown) => {
        const files = await readdir(ingest).catch(() => []);
        throw new Error(
          `${String(e)}; ingest has [${files.join(', ')}]; forwarder said: ${forwarder.output()}`,
        );
      });
      expect(lines.find((l) => l.includes(' stdout '))).toMatch(
        /^<\d+>1 \S+ \S+ talker .* talker says hello$/,
      );
      expect(lines.find((l) => l.includes(' stderr '))).toMatch(
        /^<\d+>1 \S+ \S+ talker .* talker complains$/,
      );
    } finally {
      forwarder.kill('SIGTERM');
      if (forwarder.exitCode === null) await once(forwarder, 'exit');
      await listener.close();
      await rm(ingest, { recursive: true, force: true });
    }
  });

  it('refuses a bind mount outside the allowed dirs at apply, naming the field, and changes nothing', async () => {
    const res = await c.call<{ error: { code: string; message: string } }>('POST', '/v1/apply', {
      generation: 2,
      services: [web(), talker(), side(), container('escape', { volumes: ['/etc:/host-etc'] })],
    });
    expect(res.status).toBe(400);
    expect(res.body.error.code).toBe('CORRAL_ERR_VALIDATION');
    expect(res.body.error.message).toContain('body/services/3/volumes/0');
    expect(res.body.error.message).toContain('outside the directories this agent allows for volumes');
    expect((await status()).generation).toBe(1);
    expect(await podman.running('io.corral.service=escape')).toEqual([]);
  });

  it('restarts a crashing container by the agent policy, then fails it; a failing exec health check degrades', async () => {
    const crash = container('crash', { command: '/bin/sh', args: ['-c', 'echo crashing; exit 3'] });
    const sick = container('sick', {
      command: '/bin/sleep',
      args: ['300'],
      healthCheck: {
        type: 'command',
        command: '/bin/false',
        intervalMs: 200,
        timeoutMs: 20_000,
        failureThreshold: 1,
      },
    });
    const res = await c.call('POST', '/v1/apply', {
      generation: 2,
      services: [web(), talker(), side(), crash, sick],
    });
    expect(res.status).toBe(202);
    const failed = await waitFor(
      'crash failed',
      async () => {
        const s = await service('crash');
        return s?.state === 'failed' ? s : undefined;
      },
      90_000,
    );
    expect(failed.restarts).toBe(2);
    expect(failed.lastError).toContain('3');
    const degraded = await waitFor('sick degraded', async () => {
      const s = await service('sick');
      return s?.state === 'degraded' ? s : undefined;
    });
    expect(degraded.lastError).toBe('health command failed: exit 1');
    // The engine restarted nothing on its own: the failed service has no running container.
    expect(await podman.running('io.corral.service=crash')).toEqual([]);
    await waitFor('crash events', () =>
      standIn.heartbeats.some((h) =>
        h.events.some((e) => e.type === 'service-failed' && e.service === 'crash'),
      ),
    );
  });

  it('leaves containers running when the agent is killed -9; the next agent re-adopts them, no duplicate', async () => {
    const before = await status();
    const ids = new Map(before.services.map((s) => [s.name, s.containerId]));
    await c.close();
    agent.kill('SIGKILL');
    await once(agent, 'exit');
    expect(await podman.running('io.corral.service=web')).toEqual([ids.get('web')]);

    agent = serve();
    address = await addressOf(agent, address).catch((e: unknown) => {
      throw new Error(`${String(e)}; agent said: ${agent.output()}`);
    });
    c = agentCaller(address, pki.controllerClient, worker.agentFingerprint);
    const after = await waitFor('web and talker re-adopted', async () => {
      const s = await status();
      const ok = ['web', 'talker'].every((n) => s.services.find((x) => x.name === n)?.state === 'running');
      return ok && !s.applying ? s : undefined;
    });
    for (const name of ['web', 'talker', 'sick']) {
      expect(after.services.find((s) => s.name === name)?.containerId).toBe(ids.get(name));
      expect(await podman.running(`io.corral.service=${name}`)).toEqual([ids.get(name)]);
    }
    const page = await request(`http://127.0.0.1:${webPort}/index.html`);
    expect(page.statusCode).toBe(200);
    await page.body.dump();
  });

  it('self-destruct lists and removes every Corral container, and leaves an unrelated one running', async () => {
    const stranger = (
      await podman.cli(['run', '-d', '--name', 'stranger', TEST_IMAGE, '/bin/sleep', '300'])
    ).trim();
    const ours = await podman.running('io.corral.managed=true');
    expect(ours.length).toBe(3); // web, talker, sick (crash failed and was removed)

    process.env.DOCKER_HOST = `unix://${podman.socket}`;
    const dry = await runCorral([
      'agent',
      'self-destruct',
      '--dry-run',
      '--json',
      '--state-dir',
      worker.stateDir,
    ]);
    delete process.env.DOCKER_HOST;
    expect(dry.code).toBe(0);
    const listed = (JSON.parse(dry.stdout) as { services: string[] }).services;
    for (const id of ours) expect(listed.some((l) => l.includes(`container ${id.slice(0, 12)}`))).toBe(true);
    expect(listed.some((l) => l.startsWith('side (pid '))).toBe(true);
    expect(listed.some((l) => l.includes(stranger.slice(0, 12)))).toBe(false);

    const res = await c.call('POST', '/v1/self-destruct', { hostId: worker.hostId });
    expect(res.status).toBe(202);
    await waitFor(
      'Corral containers removed',
      async () => (await podman.cli(['ps', '-aq', '--filter', 'label=io.corral.managed=true'])).trim() === '',
      60_000,
    );
    expect(await podman.running()).toEqual([stranger]);
  });
});

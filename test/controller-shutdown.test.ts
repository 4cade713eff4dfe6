/**
 * The controller's shutdown in phases (controller/controller-shutdown.ts, controller/serve.ts):
 * a controller served from a real state dir, with an update push and a deploy in flight to a
 * host whose updater and agent are real mutual-TLS peers that hold their answers, is closed.
 * The root signal aborts both, their operations record why they ended while the database is
 * still open, the requests in flight are answered, and close returns; a second close() waits
 * for the first.
 */
import { createReadStream } from 'node:fs';
import { once } from 'node:events';
import { createServer, type Server } from 'node:https';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { readFile, rm } from 'node:fs/promises';
import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { TlsMaterial } from '../pki/index.js';
import type { EnrollResponse } from '../protocol/enrollment.js';
import type { OperationDetail, OperationView } from '../protocol/operations.js';
import type { ReleasesResponse } from '../protocol/updater-api.js';
import {
  initControllerState,
  serveController,
  statePaths,
  type ServingController,
} from '../controller/index.js';
import { RESTART_REASON } from '../controller/deploy/operations.js';
import {
  agentMaterial,
  heartbeatBody,
  postJson,
  silentLog,
  waitFor,
  workerClient,
} from './controller-fixture.js';
import { buildRelease, tempDir, type BuiltRelease } from './updater-harness.js';

/** A worker daemon's API over real mTLS that answers `GET /v1/releases` and holds every POST. */
interface HoldingPeer {
  readonly port: number;
  /** Resolves with the path of the first POST once its whole body has arrived. */
  readonly holding: Promise<string>;
  /** Resolves with whether the held request's connection was closed before any answer. */
  readonly cutOff: Promise<boolean>;
  arm(material: TlsMaterial): void;
  close(): Promise<void>;
}

const releases: ReleasesResponse = {
  current: '0.9.0',
  previous: null,
  releases: [],
  history: [],
  updater: { version: '0.9.0', pid: process.pid },
  busy: false,
};

async function holdingPeer(): Promise<HoldingPeer> {
  let held: (path: string) => void = () => undefined;
  let cut: (answered: boolean) => void = () => undefined;
  const holding = new Promise<string>((resolve) => (held = resolve));
  const cutOff = new Promise<boolean>((resolve) => (cut = resolve));
  const server: Server = createServer(
    { requestCert: true, rejectUnauthorized: true, minVersion: 'TLSv1.2' },
    (req: IncomingMessage, res: ServerResponse) => {
      if (req.method === 'GET' && req.url === '/v1/releases') {
        res.setHeader('content-type', 'application/json');
        res.end(JSON.stringify(releases));
        return;
      }
      req.resume();
      req.on('end', () => held(req.url ?? ''));
      res.on('close', () => cut(!res.writableEnded));
    },
  );
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return {
    port: (server.address() as AddressInfo).port,
    holding,
    cutOff,
    arm(material) {
      server.setSecureContext({ ca: material.caPem, cert: material.certPem, key: material.keyPem });
    },
    async close() {
      server.closeAllConnections();
      server.close();
      await once(server, 'close');
    },
  };
}

let dir: string;
let release: BuiltRelease;
const peers: HoldingPeer[] = [];
const serving: ServingController[] = [];

async function serve(): Promise<{
  s: ServingController;
  admin: (method: string, path: string, body?: unknown) => Promise<{ status: number; body: unknown }>;
}> {
  const loopback = { host: '127.0.0.1', port: 0 };
  const s = await serveController({
    stateDir: dir,
    admin: loopback,
    worker: loopback,
    join: loopback,
    log: silentLog,
    heartbeatIntervalMs: 600_000,
  });
  serving.push(s);
  const token = (await readFile(statePaths(dir).adminToken, 'utf8')).trim();
  const admin = async (method: string, path: string, body?: unknown) => {
    const res = await request(`${s.endpoints.admin ?? ''}${path}`, {
      method: method as 'GET',
      headers: {
        authorization: `Bearer ${token}`,
        ...(body !== undefined ? { 'content-type': 'application/json' } : {}),
      },
      body: body === undefined ? null : JSON.stringify(body),
    });
    return { status: res.statusCode, body: await res.body.json() };
  };
  return { s, admin };
}

beforeAll(async () => {
  dir = await tempDir('ctl-shutdown');
  await initControllerState({ stateDir: dir });
  release = await buildRelease(dir, '1.0.0');
}, 60_000);

afterAll(async () => {
  for (const s of serving) await s.close();
  for (const p of peers) await p.close();
  if (dir) await rm(dir, { recursive: true, force: true });
});

describe('controller shutdown', () => {
  it('aborts an update push and a deploy in flight, records their end, then closes the database', async () => {
    const { s, admin } = await serve();
    const updater = await holdingPeer();
    const agent = await holdingPeer();
    peers.push(updater, agent);
    const enrolled = await admin('POST', '/v1/enroll', {
      name: 'w-slow',
      address: '127.0.0.1',
      agentPort: agent.port,
      updaterPort: updater.port,
    });
    expect(enrolled.status).toBe(200);
    const e = enrolled.body as EnrollResponse;
    updater.arm({ caPem: e.caPem, certPem: e.updater.certPem, keyPem: e.updater.keyPem });
    agent.arm(agentMaterial(e));
    // One heartbeat makes the host online, so the deploy places a service on it.
    await using beat = workerClient(s.endpoints.worker ?? '', agentMaterial(e));
    expect((await postJson(beat, '/v1/heartbeat', heartbeatBody(e.hostId))).status).toBe(200);
    await waitFor(async () => {
      const hosts = (await admin('GET', '/v1/hosts')).body as { hosts: { status: string }[] };
      return hosts.hosts[0]?.status === 'online';
    });

    const upload = request(`${s.endpoints.admin ?? ''}/v1/update?hosts=w-slow`, {
      method: 'POST',
      headers: {
        authorization: `Bearer ${(await readFile(statePaths(dir).adminToken, 'utf8')).trim()}`,
        'content-type': 'application/octet-stream',
        'content-length': String(release.bytes),
      },
      body: createReadStream(release.file),
    }).then(async (res) => ({
      status: res.statusCode,
      body: (await res.body.json()) as { error?: { code: string; message: string } },
    }));
    const deploy = admin('POST', '/v1/deploy', {
      spec: { services: [{ name: 'web', command: '/bin/sh', args: ['-c', 'exec sleep 300'] }] },
    });
    // Both pushes reached their peer whole, and neither peer answers.
    expect(await updater.holding).toMatch(/^\/v1\/update\?/);
    expect(await agent.holding).toBe('/v1/apply');

    const resolved: string[] = [];
    const first = s.close().then((o) => (resolved.push('first'), o));
    const second = s.close().then((o) => (resolved.push('second'), o));
    const outcomes = await first;
    expect(outcomes.map((o) => [o.name, o.ok])).toEqual([
      ['stop-accepting', true],
      ['abort-operations', true],
      ['drain', true],
      ['close-clients', true],
      ['withdraw-address', true],
      ['close-database', true],
      ['remove-endpoints', true],
      ['flush-logs', true],
    ]);
    expect(await second).toBe(outcomes);
    expect(resolved).toEqual(['first', 'second']);

    // The peers saw their requests cut off, not answered.
    expect(await updater.cutOff).toBe(true);
    expect(await agent.cutOff).toBe(true);
    // The requests in flight were answered before the listener closed.
    const up = await upload;
    expect(up.status).toBe(503);
    expect(up.body.error).toMatchObject({ code: 'CORRAL_ERR_UNAVAILABLE' });
    expect(up.body.error?.message).toContain('the controller shut down during the update');
    const dep = (await deploy) as {
      status: number;
      body: { ok: boolean; hosts: { outcome: string; reason: string }[] };
    };
    expect(dep.status).toBe(200);
    expect(dep.body.ok).toBe(false);
    expect(dep.body.hosts[0]?.reason).toContain('the controller shut down before the agent answered');
    // The database is closed.
    await expect(s.controller.db.selectFrom('operations').selectAll().execute()).rejects.toThrow();

    // What a restarted controller shows: both operations ended by the shutdown itself, not
    // by the restart's repair of operations left running (which would mean the database
    // closed under them).
    const again = await serve();
    const ops = (await again.admin('GET', '/v1/ops')).body as { operations: OperationView[] };
    const byKind = Object.fromEntries(ops.operations.map((o) => [o.kind, o]));
    expect(byKind.update?.state).toBe('failed');
    expect(byKind.deploy?.state).toBe('failed');
    for (const op of [byKind.update, byKind.deploy]) {
      const detail = (await again.admin('GET', `/v1/ops/${op?.id ?? ''}`)).body as OperationDetail;
      expect(detail.operation.reason).toBeNull();
      expect(detail.log.map((l) => l.message)).not.toContain(RESTART_REASON);
      expect(detail.steps.map((st) => [st.host, st.state])).toEqual([['w-slow', 'failed']]);
    }
    const update = (await again.admin('GET', `/v1/ops/${byKind.update?.id ?? ''}`)).body as OperationDetail;
    expect(update.log.at(-1)?.message).toBe('update broke off: the controller shut down during the update');
    expect(update.steps[0]?.detail).toContain('the push was stopped before this host finished');
  }, 120_000);
});

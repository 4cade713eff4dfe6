import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { access, mkdtemp, readFile, rm } from 'node:fs/promises';
import type { IncomingMessage } from 'node:http';
import { Agent as HttpsAgent, request as httpsRequest } from 'node:https';
import { connect as tcpConnect } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import sqlite3 from 'sqlite3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { clientTlsOptions, loadBundle, type TlsMaterial } from '../pki/index.js';
import { parseHostPort } from '../kit/host-port.js';
import { readEndpointsFile } from '../kit/endpoints-file.js';
import type { HeartbeatRequest } from '../protocol/heartbeat.js';
import {
  corral,
  heartbeatBody,
  lifecycleEvent,
  postJson,
  waitFor,
  workerClient,
} from './controller-fixture.js';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
let dir: string;
let state: string;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'corral-proc-'));
  state = join(dir, 'controller');
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

interface Served {
  readonly child: ChildProcess;
  readonly endpoints: Record<string, string>;
  readonly exited: Promise<number | null>;
}

/**
 * Starts `corral controller serve` on loopback port 0 and waits for its endpoints file. The
 * heartbeat interval is 10 minutes, so a host that heartbeated once stays `online` (two
 * intervals) across the many CLI start-ups between that heartbeat and the listings that show it.
 */
async function serve(): Promise<Served> {
  const child = spawn(
    process.execPath,
    [
      join(ROOT, 'bin', 'corral.js'),
      'controller',
      'serve',
      '--state-dir',
      state,
      '--admin-listen',
      '127.0.0.1:0',
      '--worker-listen',
      '127.0.0.1:0',
      '--log-level',
      'warn',
      '--heartbeat-interval',
      '10m',
    ],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
  let stderr = '';
  child.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
  const exited = once(child, 'exit').then(([code]) => code as number | null);
  let endpoints: Record<string, string> | undefined;
  await waitFor(async () => {
    if (child.exitCode !== null) throw new Error(`serve exited early: ${stderr}`);
    endpoints = await readEndpointsFile(state).catch(() => undefined);
    return endpoints !== undefined;
  }, 30_000);
  return { child, endpoints: endpoints!, exited };
}

async function stop(s: Served): Promise<number | null> {
  s.child.kill('SIGTERM');
  return s.exited;
}

/** Resolves with whether a plain TCP connection to `endpoint` is refused (nothing listens). */
function refused(endpoint: string): Promise<boolean> {
  const { host, port } = parseHostPort(endpoint);
  return new Promise((resolve) => {
    const socket = tcpConnect({ host, port });
    socket.once('connect', () => {
      socket.destroy();
      resolve(false);
    });
    socket.once('error', (e: NodeJS.ErrnoException) => resolve(e.code === 'ECONNREFUSED'));
  });
}

/**
 * A heartbeat held in flight: `POST /v1/heartbeat` with `Expect: 100-continue` on a keep-alive
 * connection (as an agent holds one), resolved once the controller has answered 100 Continue —
 * it has parsed the request and handed it to the route — and half of the body has been sent,
 * so the route is waiting for the rest. `finish()` sends the rest and returns the answer.
 */
async function heldHeartbeat(
  endpoint: string,
  material: TlsMaterial,
  body: HeartbeatRequest,
): Promise<{ finish(): Promise<{ status: number; body: Record<string, unknown> }>; close(): void }> {
  const { host, port } = parseHostPort(endpoint);
  const agent = new HttpsAgent({ keepAlive: true });
  const payload = Buffer.from(JSON.stringify(body));
  const req = httpsRequest({
    ...clientTlsOptions(material, { roles: ['controller'] }),
    servername: 'localhost',
    host,
    port,
    method: 'POST',
    path: '/v1/heartbeat',
    agent,
    headers: {
      'content-type': 'application/json',
      'content-length': payload.length,
      expect: '100-continue',
    },
  });
  const response = new Promise<IncomingMessage>((resolve, reject) => {
    req.once('response', resolve);
    req.once('error', reject);
  });
  req.flushHeaders();
  await Promise.race([
    once(req, 'continue'),
    response.then(() => Promise.reject(new Error('answered early'))),
  ]);
  const half = Math.floor(payload.length / 2);
  await new Promise<void>((resolve, reject) =>
    req.write(payload.subarray(0, half), (e) => (e ? reject(e) : resolve())),
  );
  return {
    async finish() {
      req.end(payload.subarray(half));
      const res = await response;
      let text = '';
      for await (const chunk of res) text += String(chunk);
      return { status: res.statusCode ?? 0, body: JSON.parse(text) as Record<string, unknown> };
    },
    close() {
      req.destroy();
      agent.destroy();
    },
  };
}

const json = <T>(r: { code: number; stdout: string; stderr: string }): T => {
  if (r.code !== 0) throw new Error(`exit ${r.code}: ${r.stderr}`);
  return JSON.parse(r.stdout) as T;
};

describe('corral controller as real processes', () => {
  // Some twenty CLI processes and two controller starts: 150 to 180 s seen at load average 20 to 28.
  it('serves, survives a restart with the same identity and state, and drains on SIGTERM', async () => {
    const init = json<{ caPin: string; created: string[] }>(
      await corral(['controller', 'init', '--state-dir', state, '--address', '127.0.0.1', '--json']),
    );
    expect(init.created).toContain('ca');
    const again = json<{ caPin: string; created: string[] }>(
      await corral(['controller', 'init', '--state-dir', state, '--json']),
    );
    expect(again).toMatchObject({ caPin: init.caPin, created: [] });

    const first = await serve();
    expect(Object.keys(first.endpoints).sort()).toEqual(['admin', 'join', 'syslog', 'worker']);
    const bundleDir = join(dir, 'bundle-web-1');
    const enrolled = json<{ hostId: string; controller: string }>(
      await corral([
        'controller',
        'enroll',
        '--state-dir',
        state,
        '--name',
        'web-1',
        '--address',
        '127.0.0.1',
        '--label',
        'tier=web',
        '--out-dir',
        bundleDir,
        '--json',
      ]),
    );
    expect(enrolled.controller).toBe(first.endpoints.worker);
    const bundle = await loadBundle(bundleDir);
    const material = {
      caPem: bundle.caPem,
      certPem: bundle.identities.agent!.certPem,
      keyPem: bundle.identities.agent!.keyPem,
    };
    {
      await using client = workerClient(first.endpoints.worker!, material);
      expect(
        (await postJson(client, '/v1/heartbeat', heartbeatBody(enrolled.hostId, { agentVersion: '7.0.0' })))
          .status,
      ).toBe(200);
    }

    const tok = json<{ token: string; caPin: string; controller: string; command: string }>(
      await corral(['controller', 'token', 'create', '--state-dir', state, '--name', 'web-2', '--json']),
    );
    expect(tok.caPin).toBe(init.caPin);
    expect(tok.command).toContain(`--controller ${first.endpoints.join}`);
    const joined = await corral([
      'agent',
      'join',
      '--controller',
      tok.controller,
      '--token',
      tok.token,
      '--ca-pin',
      tok.caPin,
      '--state-dir',
      join(dir, 'w2'),
      '--json',
    ]);
    expect(joined.code).toBe(0);
    const reused = await corral([
      'agent',
      'join',
      '--controller',
      tok.controller,
      '--token',
      tok.token,
      '--ca-pin',
      tok.caPin,
      '--state-dir',
      join(dir, 'w3'),
    ]);
    expect(reused.code).toBe(1);
    expect(reused.stderr).toContain('join token refused (CORRAL_ERR_UNAUTHENTICATED)');

    const hosts = json<{ name: string; status: string; agentVersion: string | null }[]>(
      await corral(['controller', 'hosts', '--state-dir', state, '--json']),
    );
    expect(hosts.map((h) => [h.name, h.status])).toEqual([
      ['web-1', 'online'],
      ['web-2', 'pending'],
    ]);
    const table = await corral(['controller', 'hosts', '--state-dir', state]);
    expect(table.stdout).toMatch(
      /^NAME\s+ADDRESS\s+STATUS\s+LAST SEEN\s+AGENT VERSION\s+LABELS\s+FINGERPRINT\s+ELIGIBILITY$/m,
    );
    expect(table.stdout).toMatch(
      new RegExp(
        `^web-1\\s+127\\.0\\.0\\.1\\s+online\\s+\\S+\\s+7\\.0\\.0\\s+tier=web\\s+${bundle.identities.agent!.fingerprint.slice(0, 12)}\\s+eligible$`,
        'm',
      ),
    );

    // Drain: a heartbeat the controller is reading when SIGTERM arrives is served to the end
    // and committed, while new connections are refused; then the process exits 0.
    const drained = lifecycleEvent({ type: 'agent-started', detail: 'in flight at SIGTERM' });
    const held = await heldHeartbeat(
      first.endpoints.worker!,
      material,
      heartbeatBody(enrolled.hostId, { agentVersion: '7.0.1', events: [drained] }),
    );
    try {
      first.child.kill('SIGTERM');
      const listeners = [first.endpoints.worker!, first.endpoints.join!, first.endpoints.admin!];
      await waitFor(async () => {
        for (const l of listeners) if (!(await refused(l.replace(/^http:\/\//, '')))) return false;
        return true;
      });
      expect(first.child.exitCode).toBeNull();
      const answer = await held.finish();
      expect(answer).toMatchObject({ status: 200, body: { ackedEventIds: [drained.id] } });
    } finally {
      held.close();
    }
    expect(await first.exited).toBe(0);
    await expect(access(join(state, 'run', 'endpoints.json'))).rejects.toThrow();
    const down = await corral(['controller', 'hosts', '--state-dir', state]);
    expect(down.code).toBe(1);
    expect(down.stderr).toContain('no running controller found');

    const second = await serve();
    try {
      const after = json<{ caPin: string }>(
        await corral(['controller', 'init', '--state-dir', state, '--json']),
      );
      expect(after.caPin).toBe(init.caPin);
      const detail = json<{
        host: { status: string; agentFingerprint: string; agentVersion: string };
        recentEvents: { id: string }[];
      }>(await corral(['controller', 'host', 'web-1', '--state-dir', state, '--json']));
      // What the heartbeat drained at SIGTERM carried was committed before the process exited.
      expect(detail.host).toMatchObject({
        agentFingerprint: bundle.identities.agent!.fingerprint,
        agentVersion: '7.0.1',
      });
      expect(detail.recentEvents.map((e) => e.id)).toContain(drained.id);
      // The same bundle (pins reloaded from the database) still heartbeats.
      await using client = workerClient(second.endpoints.worker!, material);
      expect((await postJson(client, '/v1/heartbeat', heartbeatBody(enrolled.hostId))).status).toBe(200);
      // The same admin token works through --url/--token too.
      const token = (await readFile(join(state, 'admin-token'), 'utf8')).trim();
      const viaUrl = await corral([
        'controller',
        'hosts',
        '--url',
        second.endpoints.admin!,
        '--token',
        token,
        '--json',
      ]);
      expect(viaUrl.code).toBe(0);
      const wrong = await corral([
        'controller',
        'hosts',
        '--url',
        second.endpoints.admin!,
        '--token',
        'nope',
      ]);
      expect([wrong.code, wrong.stderr.trim()]).toEqual([
        1,
        'corral: missing or invalid admin token (CORRAL_ERR_UNAUTHENTICATED)',
      ]);

      const noYes = await corral(['controller', 'decommission', 'web-1', '--state-dir', state]);
      expect(noYes.code).toBe(2);
      expect(noYes.stderr).toContain('without --yes');
      const gone = json<{ host: { status: string }; selfDestruct: { ok: boolean } }>(
        await corral(['controller', 'decommission', 'web-1', '--state-dir', state, '--yes', '--json']),
      );
      expect(gone).toMatchObject({ host: { status: 'decommissioned' }, selfDestruct: { ok: false } });

      const verified = json<{ ok: boolean; checked: number }>(
        await corral(['controller', 'audit', '--state-dir', state, '--verify', '--json']),
      );
      expect(verified.ok).toBe(true);
      const entries = json<{ seq: number; action: string }[]>(
        await corral(['controller', 'audit', '--state-dir', state, '--json']),
      );
      expect(entries.map((e) => e.action)).toEqual([
        'init',
        'enroll',
        'token-create',
        'join',
        'decommission',
      ]);
      expect(verified.checked).toBe(entries.length);

      // Someone edits the SQLite file behind the triggers' back: verification names the row.
      await tamper(join(state, 'corral.db'), 3);
      const broken = await corral(['controller', 'audit', '--state-dir', state, '--verify']);
      expect(broken.code).toBe(1);
      expect(broken.stdout).toMatch(/first broken entry\s+3 \(hash-mismatch\)/);
      expect(broken.stderr).toContain('audit chain broken at entry 3');
    } finally {
      expect(await stop(second)).toBe(0);
    }
  }, 300_000);
});

/** Drops the append-only triggers and rewrites one audit row, as an intruder with the file would. */
async function tamper(path: string, seq: number): Promise<void> {
  const db = await new Promise<sqlite3.Database>((res, rej) => {
    const d = new sqlite3.Database(path, (err) => (err ? rej(err) : res(d)));
  });
  const exec = (sql: string) =>
    new Promise<void>((res, rej) => db.exec(sql, (err) => (err ? rej(err) : res())));
  await expect(exec(`UPDATE audit SET target = 'someone-else' WHERE seq = ${seq}`)).rejects.toThrow(
    /append-only/,
  );
  await exec(`DROP TRIGGER audit_no_update; UPDATE audit SET target = 'someone-else' WHERE seq = ${seq};`);
  await new Promise<void>((res, rej) => db.close((err) => (err ? rej(err) : res())));
}

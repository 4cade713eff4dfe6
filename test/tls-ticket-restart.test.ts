import { mkdtemp, rm, stat } from 'node:fs/promises';
import { request } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TLSSocket } from 'node:tls';
import { afterAll, describe, expect, it } from 'vitest';
import type { EnrollResponse } from '../protocol/enrollment.js';
import { clientTlsOptions } from '../pki/index.js';
import { parseHostPort } from '../kit/host-port.js';
import { ErrorCode } from '../protocol/errors.js';
import { TLS_TICKET_KEY_FILE } from '../protocol/tls-ticket-key.js';
import { agentMaterial, heartbeatBody, startController, type TestController } from './controller-fixture.js';

/**
 * A restarted controller takes its stored session ticket key (run/tls-ticket-key.json), so
 * workers that held sessions resume them instead of paying a full handshake each. Resumption
 * must not carry a revocation across the restart: the pin check runs on every request of a
 * resumed session, against the pins the new process loaded.
 */
const dirs: string[] = [];
afterAll(async () => {
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

interface Answer {
  readonly status: number;
  readonly reused: boolean;
  readonly body: string;
  /** The last session ticket the server sent on this connection. */
  readonly session: Buffer | undefined;
}

/** How long to wait for a TLS 1.3 session ticket after the response, in ms. */
const TICKET_WAIT_MS = 2_000;

/** One heartbeat on a new connection (no agent, no keep-alive), resuming `session` if given. */
function heartbeatOnce(
  t: TestController,
  enrolled: EnrollResponse,
  session: Buffer | undefined,
): Promise<Answer> {
  const { host, port } = parseHostPort(t.endpoints.worker);
  const body = JSON.stringify(heartbeatBody(enrolled.hostId));
  return new Promise((resolve, reject) => {
    let latest: Buffer | undefined;
    const req = request(
      {
        ...clientTlsOptions(agentMaterial(enrolled), { roles: ['controller'] }),
        host,
        port,
        path: '/v1/heartbeat',
        method: 'POST',
        agent: false,
        servername: 'localhost',
        ...(session && { session }),
        headers: {
          'content-type': 'application/json',
          'content-length': Buffer.byteLength(body),
          connection: 'close',
        },
      },
      (res) => {
        const socket = res.socket as TLSSocket;
        const reused = socket.isSessionReused();
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          const done = (): void =>
            resolve({
              status: res.statusCode ?? 0,
              reused,
              body: Buffer.concat(chunks).toString('utf8'),
              session: latest,
            });
          if (latest) return done();
          const timer = setTimeout(done, TICKET_WAIT_MS);
          socket.once('session', () => {
            clearTimeout(timer);
            done();
          });
        });
      },
    );
    req.on('socket', (socket) => socket.on('session', (s: Buffer) => (latest = s)));
    req.on('error', reject);
    req.end(body);
  });
}

async function metricLine(t: TestController, resumed: boolean): Promise<number> {
  const res = await t.admin<string>('GET', '/metrics');
  const m = new RegExp(`^corral_worker_tls_handshakes_total\\{resumed="${resumed}"\\} (\\d+)$`, 'm').exec(
    res.body,
  );
  return Number(m?.[1]);
}

describe('TLS session tickets across a controller restart', () => {
  it('resumes sessions made before the restart, refuses a revoked host on them, and resumes nothing without the key file', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'corral-ticket-'));
    dirs.push(dir);
    const keyFile = join(dir, 'run', TLS_TICKET_KEY_FILE);

    const first = await startController({ dir, decommissionWaitMs: 300 });
    const kept = await first.enroll('kept');
    const goneBefore = await first.enroll('gone-before');
    const goneAfter = await first.enroll('gone-after');
    const sessions = new Map<string, Buffer>();
    for (const e of [kept, goneBefore, goneAfter]) {
      const a = await heartbeatOnce(first, e, undefined);
      expect([a.status, a.reused]).toEqual([200, false]);
      expect(a.session).toBeDefined();
      sessions.set(e.hostId, a.session!);
    }
    expect((await stat(keyFile)).mode & 0o777).toBe(0o600);
    expect((await first.admin('POST', '/v1/hosts/gone-before/decommission')).status).toBe(200);
    await first.close();

    const second = await startController({ dir, decommissionWaitMs: 300 });
    try {
      const ok = await heartbeatOnce(second, kept, sessions.get(kept.hostId));
      expect([ok.status, ok.reused]).toEqual([200, true]);

      // Revoked before the restart: the resumed session still carries its certificate, and the
      // new process's pins say it is decommissioned.
      const before = await heartbeatOnce(second, goneBefore, sessions.get(goneBefore.hostId));
      expect(before.reused).toBe(true);
      expect(before.status).toBe(410);
      expect(JSON.parse(before.body)).toMatchObject({ error: { code: ErrorCode.DECOMMISSIONED } });

      // Revoked after the restart, on a session of the process before.
      expect((await second.admin('POST', '/v1/hosts/gone-after/decommission')).status).toBe(200);
      const after = await heartbeatOnce(second, goneAfter, sessions.get(goneAfter.hostId));
      expect(after.reused).toBe(true);
      expect(after.status).toBe(410);

      expect(await metricLine(second, true)).toBe(3);
      expect(await metricLine(second, false)).toBe(0);
      sessions.set(kept.hostId, ok.session ?? sessions.get(kept.hostId)!);
    } finally {
      await second.close();
    }

    // The key file is what carries the sessions: without it, a full handshake (still accepted).
    await rm(keyFile);
    const third = await startController({ dir });
    try {
      const full = await heartbeatOnce(third, kept, sessions.get(kept.hostId));
      expect([full.status, full.reused]).toEqual([200, false]);
      expect((await stat(keyFile)).mode & 0o777).toBe(0o600);
    } finally {
      await third.close();
    }
  });

  it('a session of another state dir (another CA) is not resumed', async () => {
    const a = await startController();
    const b = await startController();
    try {
      const ea = await a.enroll('a-host');
      const made = await heartbeatOnce(a, ea, undefined);
      expect(made.session).toBeDefined();
      const eb = await b.enroll('b-host');
      const other = await heartbeatOnce(b, eb, made.session);
      expect([other.status, other.reused]).toEqual([200, false]);
    } finally {
      await Promise.all([a.close(), b.close()]);
    }
  });
});

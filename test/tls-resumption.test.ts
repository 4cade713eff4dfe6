import { Agent, request } from 'node:https';
import type { TLSSocket } from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { clientTlsOptions } from '../pki/index.js';
import { parseHostPort } from '../kit/host-port.js';
import { ErrorCode } from '../protocol/errors.js';
import { agentMaterial, heartbeatBody, startController, type TestController } from './controller-fixture.js';

/**
 * The connection policy (README, "Connections at fleet scale") relies on TLS session
 * resumption: a worker whose idle connection was closed comes back with an abbreviated
 * handshake. Resumption must not weaken the checks: the pinned role check runs on the full
 * handshake that made the session, and the controller's pin check runs on every request,
 * resumed or not, so a decommissioned host's resumed session is still refused.
 */
let t: TestController;
beforeAll(async () => {
  t = await startController({ decommissionWaitMs: 500 });
});
afterAll(async () => {
  await t.close();
});

/** One heartbeat on a fresh connection (no keep-alive), through `agent`'s TLS session cache. */
function heartbeatOnce(
  agent: Agent,
  hostId: string,
): Promise<{ status: number; reused: boolean; body: string }> {
  const { host, port } = parseHostPort(t.endpoints.worker);
  const body = JSON.stringify(heartbeatBody(hostId));
  return new Promise((resolve, reject) => {
    const req = request(
      {
        host,
        port,
        path: '/v1/heartbeat',
        method: 'POST',
        agent,
        servername: 'localhost',
        headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) },
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () =>
          resolve({
            status: res.statusCode ?? 0,
            reused: (res.socket as TLSSocket).isSessionReused(),
            body: Buffer.concat(chunks).toString('utf8'),
          }),
        );
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

describe('TLS session resumption on the worker listener', () => {
  it('resumes a closed connection, keeps accepting the pinned worker, and still refuses it once decommissioned', async () => {
    const enrolled = await t.enroll('resume-1');
    const agent = new Agent({
      ...clientTlsOptions(agentMaterial(enrolled), { roles: ['controller'] }),
      keepAlive: false,
      maxCachedSessions: 4,
    });
    try {
      const first = await heartbeatOnce(agent, enrolled.hostId);
      const second = await heartbeatOnce(agent, enrolled.hostId);
      expect([first.status, first.reused]).toEqual([200, false]);
      expect([second.status, second.reused]).toEqual([200, true]);

      const gone = await t.admin('POST', '/v1/hosts/resume-1/decommission');
      expect(gone.status).toBe(200);
      const after = await heartbeatOnce(agent, enrolled.hostId);
      expect(after.reused).toBe(true);
      // Its own last-pinned certificate, over a resumed session too: told it is decommissioned.
      expect(after.status).toBe(410);
      expect(JSON.parse(after.body)).toMatchObject({ error: { code: ErrorCode.DECOMMISSIONED } });
    } finally {
      agent.destroy();
    }
  });

  it('a client that pins another role gets no session to resume: its full handshake already failed', async () => {
    const enrolled = await t.enroll('resume-2');
    const agent = new Agent({
      ...clientTlsOptions(agentMaterial(enrolled), { roles: ['agent'] }),
      keepAlive: false,
      maxCachedSessions: 4,
    });
    try {
      for (let i = 0; i < 2; i++) {
        await expect(heartbeatOnce(agent, enrolled.hostId)).rejects.toMatchObject({
          code: 'CORRAL_ERR_PEER_ROLE',
        });
      }
    } finally {
      agent.destroy();
    }
  });
});

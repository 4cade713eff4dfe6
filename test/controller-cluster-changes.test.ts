/**
 * Two real `controller serve` processes on one private PostgreSQL database, with their
 * periodic resync set to ten minutes, so that whatever reaches the other controller within
 * this test got there by its announcement (NOTIFY on corral_changes), not by a re-read:
 *  - a host enrolled through A heartbeats through B, a host joined through A heartbeats
 *    through B, and a decommission through A closes the host's live connection on B;
 *  - a host that fails over B → A → B has the services it reports last written (B forgets
 *    what it cached once A wrote them);
 *  - a certificate renewed through A and used there: its retirement of the old one closes the
 *    old one's live connection on B, and the new one works on B;
 *  - a join token revoked on A cannot be used on B;
 *  - a webhook added through the follower B is delivered to by the leader A;
 *  - with `approvals: { operators: 1 }`: a create asked on B and approved on A runs on B when
 *    its requester asks again; one asked on A, approved on B, runs on A and the new operator
 *    works on B at once; its revocation approved on A closes its open event stream on B and B
 *    refuses it.
 * The delays seen are printed (no timing is asserted: each wait is bounded far below the resync).
 */
import { once } from 'node:events';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { request } from 'undici';
import { describe, expect, it } from 'vitest';
import { joinFleet } from '../agent/link/join.js';
import { spawnDaemon, type Daemon } from '../cli/up/daemon.js';
import { isolatedEnv } from '../cli/up/local-controller.js';
import { readEndpointsFile } from '../kit/endpoints-file.js';
import { createCsr, loadBundle } from '../pki/index.js';
import type { ApprovalPending, ApprovalView } from '../protocol/approvals.js';
import type { HostDetail } from '../protocol/admin-hosts.js';
import type { EnrollResponse, RenewResponse, TokenCreateResponse } from '../protocol/enrollment.js';
import { ErrorCode } from '../protocol/errors.js';
import type { OperatorCreateResponse } from '../protocol/operators.js';
import { agentMaterial, heartbeatBody, postJson, workerClient } from './controller-fixture.js';
import { poll } from './fleet-fixture.js';
import { clusterServeArgs, sharedControllerStates } from './cluster-fixture.js';
import { postgresSkipReason, startPostgres } from './postgres-fixture.js';

/** Far longer than the test: nothing here can arrive by the periodic re-read. */
const RESYNC = '10m';
/** How long one change may take to show on the other controller before the test fails. */
const ARRIVAL_BOUND_MS = 10_000;
const TRY_EVERY_MS = 20;
const skip = postgresSkipReason();

interface Endpoints {
  readonly admin: string;
  readonly worker: string;
  readonly join: string;
}

/** Tries `attempt` every TRY_EVERY_MS until it returns true; the ms it took from `since`. */
async function arrival(what: string, since: number, attempt: () => Promise<boolean>): Promise<number> {
  for (let i = 0; i < ARRIVAL_BOUND_MS / TRY_EVERY_MS; i++) {
    if (await attempt().catch(() => false /* refused at the TLS handshake: not there yet */)) {
      return Math.round(performance.now() - since);
    }
    if (performance.now() - since > ARRIVAL_BOUND_MS) break;
    await sleep(TRY_EVERY_MS);
  }
  throw new Error(`${what}: not seen on the other controller within ${ARRIVAL_BOUND_MS} ms`);
}

describe.skipIf(skip !== undefined)(
  `two controllers on one PostgreSQL: changes reach the other at once${skip ? ` (skipped: ${skip})` : ''}`,
  () => {
    it('pins, join tokens, operators and approvals take effect on the other controller without a resync', async () => {
      const pg = await startPostgres();
      const dir = await mkdtemp(join(tmpdir(), 'corral-changes-'));
      const daemons: Daemon[] = [];
      const delays: Record<string, number> = {};
      let closeHooks: () => Promise<unknown> = () => Promise.resolve();
      try {
        const url = await pg.createDatabase();
        const { a, b } = await sharedControllerStates(dir, url);
        const gated = join(dir, 'approvals.yaml');
        await writeFile(gated, 'approvals:\n  operators: 1\n', { mode: 0o600 });
        const serve = async (d: string, name: string, config?: string): Promise<Daemon> => {
          const daemon = await spawnDaemon({
            name,
            command: process.execPath,
            args: clusterServeArgs(d, url, [
              '--join-listen',
              '127.0.0.1:0',
              '--syslog-listen',
              '127.0.0.1:0',
              '--no-heartbeat-budget',
              '--cluster-resync',
              RESYNC,
              ...(config !== undefined ? ['--config', config] : []),
            ]),
            logFile: join(dir, `${name}.log`),
            env: isolatedEnv(),
          });
          daemons.push(daemon);
          return daemon;
        };
        const endpointsOf = (d: string): Promise<Endpoints> =>
          poll(
            `${d} up`,
            async () => {
              const e = await readEndpointsFile(d).catch(() => undefined /* not written yet */);
              return e?.admin !== undefined && e.worker !== undefined && e.join !== undefined
                ? { admin: e.admin, worker: e.worker, join: e.join }
                : undefined;
            },
            60_000,
          );
        const rootToken = (await readFile(join(a, 'admin-token'), 'utf8')).trim();
        const call = async <T>(
          ep: Endpoints,
          token: string,
          method: string,
          path: string,
          body?: unknown,
        ) => {
          const res = await request(`${ep.admin}${path}`, {
            method: method as 'GET',
            headers: {
              authorization: `Bearer ${token}`,
              ...(body !== undefined && { 'content-type': 'application/json' }),
            },
            body: body === undefined ? null : JSON.stringify(body),
          });
          return { status: res.statusCode, body: (await res.body.json()) as T };
        };

        // The operator who approves exists before `operators` approvals are turned on.
        const setup = await serve(a, 'setup');
        const setupEp = await endpointsOf(a);
        const made = await call<OperatorCreateResponse>(setupEp, rootToken, 'POST', '/v1/operators', {
          name: 'checker',
          scopes: ['approve', 'read'],
        });
        expect(made.status).toBe(200);
        const checker = made.body.token ?? '';
        await setup.stop();
        daemons.splice(daemons.indexOf(setup), 1);

        await serve(a, 'a', gated);
        const A = await endpointsOf(a);
        await serve(b, 'b', gated);
        const B = await endpointsOf(b);

        await poll('a leads', async () => {
          const r = await request(`${A.admin}/metrics`, {
            headers: { authorization: `Bearer ${rootToken}` },
          });
          return /^corral_controller_leader 1$/m.test(await r.body.text()) ? true : undefined;
        });

        // A webhook added through the follower B: the leader A delivers to it.
        const delivered: string[] = [];
        const hooks = createServer((req, res) => {
          let body = '';
          req.setEncoding('utf8');
          req.on('data', (c: string) => (body = (body + c).slice(0, 65_536)));
          req.on('end', () => {
            delivered.push(body);
            res.writeHead(204).end();
          });
        });
        hooks.listen(0, '127.0.0.1');
        await once(hooks, 'listening');
        closeHooks = () => new Promise((r) => hooks.close(r));
        const hookPort = (hooks.address() as AddressInfo).port;
        const added = await call(B, rootToken, 'POST', '/v1/webhooks', {
          name: 'watch',
          url: `http://127.0.0.1:${hookPort}/hook`,
          events: ['host.enrolled'],
        });
        expect(added.status).toBe(200);

        // Enrolled through A (B already running, its pins read at start): heartbeats through B.
        const enrolled = await call<EnrollResponse>(A, rootToken, 'POST', '/v1/enroll', {
          name: 'h-enrolled',
          address: '127.0.0.1',
        });
        expect(enrolled.status).toBe(200);
        let t0 = performance.now();
        delays['enrolled on A → heartbeat accepted by B'] = await arrival('enrolled host', t0, async () => {
          await using c = workerClient(B.worker, agentMaterial(enrolled.body));
          return (await postJson(c, '/v1/heartbeat', heartbeatBody(enrolled.body.hostId))).status === 200;
        });
        delays['webhook added on B, host enrolled on A → delivered by A'] = await arrival(
          'webhook delivery',
          t0,
          () => Promise.resolve(delivered.some((d) => d.includes('h-enrolled'))),
        );

        // Joined through A's join listener with a token made on B: heartbeats through B.
        const tokenB = await call<TokenCreateResponse>(B, rootToken, 'POST', '/v1/tokens', {
          name: 'h-joined',
        });
        expect(tokenB.status).toBe(200);
        const joined = await joinFleet({
          controller: A.join,
          token: tokenB.body.token,
          caPin: tokenB.body.caPin,
          stateDir: join(dir, 'worker-joined'),
        });
        const bundle = await loadBundle(joined.bundleDir);
        const joinedAgent = bundle.identities.agent;
        if (!joinedAgent) throw new Error('the joined bundle has no agent identity');
        const joinedTls = { caPem: bundle.caPem, certPem: joinedAgent.certPem, keyPem: joinedAgent.keyPem };
        t0 = performance.now();
        delays['joined through A → heartbeat accepted by B'] = await arrival('joined host', t0, async () => {
          await using c = workerClient(B.worker, joinedTls);
          return (await postJson(c, '/v1/heartbeat', heartbeatBody(bundle.manifest.hostId))).status === 200;
        });

        // The joined host fails over B → A → B with its services changing: B writes them again
        // when it comes back (A's first write for it told B to forget what it had written).
        const beat = async (ep: Endpoints, state: 'running' | 'failed'): Promise<void> => {
          await using c = workerClient(ep.worker, joinedTls);
          const services = [{ name: 'api', state, restarts: 0, lastError: null, pid: 7, since: null }];
          const r = await postJson(c, '/v1/heartbeat', heartbeatBody(bundle.manifest.hostId, { services }));
          expect(r.status).toBe(200);
        };
        const servicesReceived = async (): Promise<number> => {
          const r = await request(`${B.admin}/metrics`, {
            headers: { authorization: `Bearer ${rootToken}` },
          });
          const m = /^corral_cluster_changes_received_total\{kind="services"\} (\d+)$/m.exec(
            await r.body.text(),
          );
          return Number(m?.[1] ?? -1);
        };
        const stateOn = async (ep: Endpoints): Promise<string | undefined> =>
          (await call<HostDetail>(ep, rootToken, 'GET', '/v1/hosts/h-joined')).body.services[0]?.state;
        await beat(B, 'running');
        const told = await servicesReceived();
        await beat(A, 'failed');
        expect(await stateOn(B)).toBe('failed');
        t0 = performance.now();
        delays['services written on A → B forgets its cached copy'] = await arrival(
          'services announcement',
          t0,
          async () => (await servicesReceived()) > told,
        );
        await beat(B, 'running');
        expect(await stateOn(A)).toBe('running');

        // A join token revoked on A is refused by B's join listener.
        const tokenA = await call<TokenCreateResponse>(A, rootToken, 'POST', '/v1/tokens', {
          name: 'h-never',
        });
        expect(tokenA.status).toBe(200);
        const revokedToken = await call(A, rootToken, 'POST', `/v1/tokens/${tokenA.body.view.id}/revoke`);
        expect(revokedToken.status).toBe(200);
        await expect(
          joinFleet({
            controller: B.join,
            token: tokenA.body.token,
            caPin: tokenA.body.caPin,
            stateDir: join(dir, 'worker-never'),
          }),
        ).rejects.toMatchObject({ code: ErrorCode.UNAUTHENTICATED, message: 'join token refused' });

        // Renewed through A: the new certificate works on B at once; once A sees it in use and
        // retires the old one, B closes the old certificate's live connection too.
        const renewing = await call<EnrollResponse>(A, rootToken, 'POST', '/v1/enroll', {
          name: 'h-renew',
          address: '127.0.0.1',
        });
        expect(renewing.status).toBe(200);
        const oldOnB = workerClient(B.worker, agentMaterial(renewing.body));
        await arrival('renewing host', performance.now(), async () => {
          return (
            (await postJson(oldOnB, '/v1/heartbeat', heartbeatBody(renewing.body.hostId))).status === 200
          );
        });
        const oldClosed = once(oldOnB, 'disconnect');
        const csr = await createCsr('h-renew');
        const oldOnA = workerClient(A.worker, agentMaterial(renewing.body));
        const renewed = await postJson(oldOnA, '/v1/renew', { role: 'agent', csrPem: csr.csrPem });
        expect(renewed.status, JSON.stringify(renewed.body)).toBe(200);
        const newTls = {
          caPem: renewing.body.caPem,
          certPem: (renewed.body as unknown as RenewResponse).certPem,
          keyPem: csr.keyPem,
        };
        // The new certificate in use on A: A retires the old one, and B (which never saw the new
        // one in use) closes the old one's live connection when A announces it.
        t0 = performance.now();
        {
          await using newOnA = workerClient(A.worker, newTls);
          const r = await postJson(newOnA, '/v1/heartbeat', heartbeatBody(renewing.body.hostId));
          expect(r.status).toBe(200);
        }
        await Promise.race([
          oldClosed,
          sleep(ARRIVAL_BOUND_MS).then(() => {
            throw new Error("the old certificate's live connection on B was not closed");
          }),
        ]);
        delays['renewed, new certificate used on A → old one’s live connection on B closed'] = Math.round(
          performance.now() - t0,
        );
        t0 = performance.now();
        delays['renewed on A → new certificate accepted by B'] = await arrival(
          'renewed pin',
          t0,
          async () => {
            await using c = workerClient(B.worker, newTls);
            return (await postJson(c, '/v1/heartbeat', heartbeatBody(renewing.body.hostId))).status === 200;
          },
        );
        await oldOnB.destroy();
        await oldOnA.destroy();

        // A decommission through A closes the enrolled host's live connection on B.
        const live = workerClient(B.worker, agentMaterial(enrolled.body));
        expect((await postJson(live, '/v1/heartbeat', heartbeatBody(enrolled.body.hostId))).status).toBe(200);
        const disconnected = once(live, 'disconnect');
        t0 = performance.now();
        const gone = await call<{ host: { status: string } }>(
          A,
          rootToken,
          'POST',
          '/v1/hosts/h-enrolled/decommission',
        );
        expect([gone.status, gone.body.host.status]).toEqual([200, 'decommissioned']);
        await Promise.race([
          disconnected,
          sleep(ARRIVAL_BOUND_MS).then(() => {
            throw new Error('the live connection on B was not closed');
          }),
        ]);
        delays['decommissioned on A → live connection on B closed'] = Math.round(performance.now() - t0);
        const after = await postJson(live, '/v1/heartbeat', heartbeatBody(enrolled.body.hostId)).catch(
          (e: unknown) => e,
        );
        expect(after).not.toMatchObject({ status: 200 });
        await live.destroy();

        // A create asked on B and approved on A runs on B when its requester asks again.
        const carolBody = { name: 'carol', scopes: ['read'] };
        const askedB = await call<ApprovalPending>(B, rootToken, 'POST', '/v1/operators', carolBody);
        expect(askedB.status).toBe(202);
        const approvedA = await call<ApprovalView>(
          A,
          checker,
          'POST',
          `/v1/approvals/${askedB.body.approval.id}/approve`,
        );
        expect(approvedA.body.state).toBe('approved');
        t0 = performance.now();
        let carol = '';
        delays['approved on A → approved request runs on B'] = await arrival('approval', t0, async () => {
          const r = await call<OperatorCreateResponse>(B, rootToken, 'POST', '/v1/operators', carolBody);
          carol = r.body.token ?? '';
          return r.status === 200;
        });
        expect(carol).toMatch(/^corral_op_/);
        expect((await call(A, carol, 'GET', '/v1/hosts')).status).toBe(200);

        // One asked on A and approved on B runs on A; the new operator works on B at once.
        const daveBody = { name: 'dave', scopes: ['read'] };
        const askedA = await call<ApprovalPending>(A, rootToken, 'POST', '/v1/operators', daveBody);
        expect(askedA.status).toBe(202);
        const approvedB = await call<ApprovalView>(
          B,
          checker,
          'POST',
          `/v1/approvals/${askedA.body.approval.id}/approve`,
        );
        expect(approvedB.body.state).toBe('approved');
        const createdA = await call<OperatorCreateResponse>(A, rootToken, 'POST', '/v1/operators', daveBody);
        expect(createdA.status).toBe(200);
        const dave = createdA.body.token ?? '';
        t0 = performance.now();
        delays['operator created on A → its token accepted by B'] = await arrival(
          'operator',
          t0,
          async () => {
            return (await call(B, dave, 'GET', '/v1/hosts')).status === 200;
          },
        );

        // Dave follows the event stream on B; his revocation, approved on A, closes it.
        const stream = await request(`${B.admin}/v1/events?follow=true`, {
          headers: { authorization: `Bearer ${dave}`, accept: 'text/event-stream' },
        });
        expect(stream.statusCode).toBe(200);
        stream.body.on('data', () => undefined);
        stream.body.on('error', () => undefined /* the controller destroyed the connection */);
        // Closed by the controller: the body ends in an error ("other side closed"), then closes.
        const streamClosed = new Promise((resolve) => stream.body.once('close', resolve));
        const revoke = await call<ApprovalPending>(A, rootToken, 'POST', '/v1/operators/dave/revoke');
        expect(revoke.status).toBe(202);
        t0 = performance.now();
        const revoked = await call<ApprovalView>(
          A,
          checker,
          'POST',
          `/v1/approvals/${revoke.body.approval.id}/approve`,
        );
        expect(revoked.body.state).toBe('completed');
        await Promise.race([
          streamClosed,
          sleep(ARRIVAL_BOUND_MS).then(() => {
            throw new Error("dave's event stream on B was not closed");
          }),
        ]);
        delays['operator revoked on A → its event stream on B closed'] = Math.round(performance.now() - t0);
        expect((await call(B, dave, 'GET', '/v1/hosts')).status).toBe(401);
        expect((await call(B, carol, 'GET', '/v1/hosts')).status).toBe(200);

        const metricsB = await request(`${B.admin}/metrics`, {
          headers: { authorization: `Bearer ${rootToken}` },
        });
        const text = await metricsB.body.text();
        const received = Object.fromEntries(
          [...text.matchAll(/^corral_cluster_changes_received_total\{kind="(\w+)"\} (\d+)$/gm)].map((m) => [
            m[1],
            Number(m[2]),
          ]),
        );
        console.log(
          [
            'propagation delays between two controllers (resync 10m; each includes one request):',
            ...Object.entries(delays).map(([what, ms]) => `  ${what}: ${ms} ms`),
            `  announcements B received: ${JSON.stringify(received)}`,
          ].join('\n'),
        );
        // At least the enrolments, the join, the renewal, the retirement and the decommission;
        // the revocation of dave's credential.
        expect(received.host).toBeGreaterThanOrEqual(6);
        expect(received.operator).toBeGreaterThanOrEqual(1);
        const receivedA = await request(`${A.admin}/metrics`, {
          headers: { authorization: `Bearer ${rootToken}` },
        });
        expect(await receivedA.body.text()).toMatch(
          /^corral_cluster_changes_received_total\{kind="webhooks"\} 1$/m,
        );
      } finally {
        for (const d of daemons.reverse()) await d.stop().catch(() => undefined /* already gone */);
        await closeHooks();
        await pg.stop().catch(() => undefined /* best effort */);
        await rm(dir, { recursive: true, force: true });
      }
    }, 180_000);
  },
);

import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { joinFleet, JoinErrorCode } from '../agent/link/join.js';
import { createCa, loadBundle, PkiErrorCode } from '../pki/index.js';
import type { AuditListResponse } from '../protocol/admin-audit.js';
import type { HostDetail } from '../protocol/admin-hosts.js';
import type { TokenListResponse } from '../protocol/admin-tokens.js';
import type { TokenCreateResponse } from '../protocol/enrollment.js';
import { ErrorCode } from '../protocol/errors.js';
import {
  heartbeatBody,
  postJson,
  startController,
  workerClient,
  type TestController,
} from './controller-fixture.js';

let t: TestController;
let work: string;
let now = Date.now();
const clock = { now: () => now };

beforeAll(async () => {
  t = await startController({ clock });
  work = await mkdtemp(join(tmpdir(), 'corral-join-'));
});
afterAll(async () => {
  await t.close();
  await rm(work, { recursive: true, force: true });
});

let n = 0;
async function token(name: string, ttlSeconds?: number): Promise<TokenCreateResponse> {
  const res = await t.admin<TokenCreateResponse>('POST', '/v1/tokens', {
    name,
    ...(ttlSeconds ? { ttlSeconds } : {}),
  });
  expect(res.status).toBe(200);
  return res.body;
}
const stateDir = (): string => join(work, `w${n++}`);

const REFUSED = { code: ErrorCode.UNAUTHENTICATED, message: 'join token refused' };

describe('agent join with a single-use token', () => {
  it('makes keys locally, writes a bundle the worker can heartbeat with, and uses the token up', async () => {
    const tok = await token('joined-1');
    expect(tok.controller).toBe(t.endpoints.join);
    expect(tok.caPin).toBe(`sha256:${t.identity.ca.fingerprint}`);
    const dir = stateDir();
    const joined = await joinFleet({
      controller: tok.controller,
      token: tok.token,
      caPin: tok.caPin,
      stateDir: dir,
      agentPort: 9100,
    });
    expect(joined.manifest).toMatchObject({
      hostName: 'joined-1',
      address: '127.0.0.1',
      agentPort: 9100,
      updaterPort: 8766,
      controller: t.endpoints.worker,
      caFingerprint: t.identity.ca.fingerprint,
      controllerClientFingerprint: t.identity.client.fingerprint,
    });
    const bundle = await loadBundle(joined.bundleDir);
    expect(bundle.identities.agent?.fingerprint).toBeDefined();

    await using client = workerClient(t.endpoints.worker, {
      caPem: bundle.caPem,
      certPem: bundle.identities.agent!.certPem,
      keyPem: bundle.identities.agent!.keyPem,
    });
    expect((await postJson(client, '/v1/heartbeat', heartbeatBody(bundle.manifest.hostId))).status).toBe(200);
    const detail = (await t.admin<HostDetail>('GET', '/v1/hosts/joined-1')).body;
    expect(detail).toMatchObject({
      enrolledVia: 'join',
      host: { status: 'online', agentFingerprint: bundle.identities.agent!.fingerprint },
    });

    const tokens = (await t.admin<TokenListResponse>('GET', '/v1/tokens')).body.tokens;
    expect(tokens.find((x) => x.id === tok.view.id)?.state).toBe('used');
    const again = joinFleet({
      controller: tok.controller,
      token: tok.token,
      caPin: tok.caPin,
      stateDir: stateDir(),
    });
    await expect(again).rejects.toMatchObject(REFUSED);
    const audit = (await t.admin<AuditListResponse>('GET', '/v1/audit?limit=1000')).body.entries;
    expect(audit.filter((e) => e.target === 'joined-1').map((e) => e.action)).toEqual([
      'token-create',
      'join',
    ]);
  });

  it('gives an unknown, an expired and a revoked token the same 401 without detail', async () => {
    const unknown = joinFleet({
      controller: t.endpoints.join,
      token: 'corral_join_thisisnotatokenthatexists',
      caPin: `sha256:${t.identity.ca.fingerprint}`,
      stateDir: stateDir(),
    });
    await expect(unknown).rejects.toMatchObject(REFUSED);

    const expiring = await token('joined-exp', 60);
    now += 61_000;
    await expect(
      joinFleet({
        controller: expiring.controller,
        token: expiring.token,
        caPin: expiring.caPin,
        stateDir: stateDir(),
      }),
    ).rejects.toMatchObject(REFUSED);

    const revoked = await token('joined-rev');
    const rev = await t.admin('POST', `/v1/tokens/${revoked.view.id}/revoke`);
    expect(rev.status).toBe(200);
    await expect(
      joinFleet({
        controller: revoked.controller,
        token: revoked.token,
        caPin: revoked.caPin,
        stateDir: stateDir(),
      }),
    ).rejects.toMatchObject(REFUSED);
    const states = (await t.admin<TokenListResponse>('GET', '/v1/tokens')).body.tokens;
    expect(states.find((x) => x.id === expiring.view.id)?.state).toBe('expired');
    expect(states.find((x) => x.id === revoked.view.id)?.state).toBe('revoked');
  });

  it('lets exactly one of several concurrent joins with one token win', async () => {
    const tok = await token('joined-race');
    const attempts = await Promise.allSettled(
      Array.from({ length: 6 }, () =>
        joinFleet({ controller: tok.controller, token: tok.token, caPin: tok.caPin, stateDir: stateDir() }),
      ),
    );
    const won = attempts.filter((a) => a.status === 'fulfilled');
    const lost = attempts.filter((a): a is PromiseRejectedResult => a.status === 'rejected');
    expect(won).toHaveLength(1);
    expect(lost).toHaveLength(5);
    for (const l of lost) expect(l.reason).toMatchObject(REFUSED);
    const hosts = (await t.admin<{ hosts: { name: string }[] }>('GET', '/v1/hosts')).body.hosts;
    expect(hosts.filter((h) => h.name === 'joined-race')).toHaveLength(1);
  });

  it('refuses to send the token to a server whose chain does not hold the pinned CA', async () => {
    const tok = await token('joined-pin');
    const other = await createCa();
    await expect(
      joinFleet({
        controller: tok.controller,
        token: tok.token,
        caPin: `sha256:${other.fingerprint}`,
        stateDir: stateDir(),
      }),
    ).rejects.toMatchObject({ code: PkiErrorCode.PIN_MISMATCH });
    await expect(
      joinFleet({
        controller: tok.controller,
        token: tok.token,
        caPin: 'sha256:nothex',
        stateDir: stateDir(),
      }),
    ).rejects.toMatchObject({ code: JoinErrorCode.BAD_PIN });
    // The token was never presented, so it still works.
    const ok = await joinFleet({
      controller: tok.controller,
      token: tok.token,
      caPin: tok.caPin,
      stateDir: stateDir(),
    });
    expect(ok.manifest.hostName).toBe('joined-pin');
  });

  it('refuses to join over an existing bundle, and refuses tokens for reserved or taken names', async () => {
    const tok = await token('joined-twice');
    const dir = stateDir();
    await joinFleet({ controller: tok.controller, token: tok.token, caPin: tok.caPin, stateDir: dir });
    const second = await token('joined-twice-b');
    await expect(
      joinFleet({ controller: second.controller, token: second.token, caPin: second.caPin, stateDir: dir }),
    ).rejects.toMatchObject({ code: JoinErrorCode.ALREADY_ENROLLED });
    const taken = await t.admin<{ error: { code: string } }>('POST', '/v1/tokens', { name: 'joined-twice' });
    expect([taken.status, taken.body.error.code]).toEqual([409, ErrorCode.NAME_TAKEN]);
    const reserved = await t.admin<{ error: { code: string } }>('POST', '/v1/tokens', { name: 'controller' });
    expect([reserved.status, reserved.body.error.code]).toEqual([400, ErrorCode.NAME_RESERVED]);
  });

  it('refuses a malformed CSR with a clear 400 and leaves the token usable', async () => {
    const tok = await token('joined-csr');
    await using client = workerClient(t.endpoints.join, { caPem: t.identity.ca.certPem });
    const bad = await postJson(client, '/v1/join', {
      token: tok.token,
      address: '127.0.0.1',
      agentCsrPem: '-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n',
      updaterCsrPem: 'x',
    });
    expect(bad.status).toBe(400);
    expect(bad.body.error?.code).toBe(ErrorCode.CSR_REFUSED);
    const ok = await joinFleet({
      controller: tok.controller,
      token: tok.token,
      caPin: tok.caPin,
      stateDir: stateDir(),
    });
    expect(ok.manifest.hostName).toBe('joined-csr');
  });

  it("gives the host the worker's labels beside the token's; a clash is a 409 that leaves the token usable", async () => {
    const created = await t.admin<TokenCreateResponse>('POST', '/v1/tokens', {
      name: 'joined-labels',
      labels: { zone: 'a' },
    });
    expect(created.status).toBe(200);
    const tok = created.body;
    const clash = joinFleet({
      controller: tok.controller,
      token: tok.token,
      caPin: tok.caPin,
      stateDir: stateDir(),
      labels: { zone: 'b', tier: 'web' },
    });
    await expect(clash).rejects.toMatchObject({
      code: ErrorCode.CONFLICT,
      message: "label zone=b clashes with the join token's zone=a",
    });
    const joined = await joinFleet({
      controller: tok.controller,
      token: tok.token,
      caPin: tok.caPin,
      stateDir: stateDir(),
      labels: { zone: 'a', tier: 'web' },
    });
    expect(joined.manifest.hostName).toBe('joined-labels');
    const detail = (await t.admin<HostDetail>('GET', '/v1/hosts/joined-labels')).body;
    expect(detail.host.labels).toEqual({ tier: 'web', zone: 'a' });
  });
});

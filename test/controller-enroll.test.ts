import { mkdtemp, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { initControllerState } from '../controller/index.js';
import { identityFromPem, loadBundle, writeBundle } from '../pki/index.js';
import type { HostDetail, HostListResponse } from '../protocol/admin-hosts.js';
import type { EnrollResponse } from '../protocol/enrollment.js';
import { ErrorCode } from '../protocol/errors.js';
import { startController, type TestController } from './controller-fixture.js';

let t: TestController;
beforeAll(async () => {
  t = await startController();
});
afterAll(async () => {
  await t.close();
});

type Err = { error: { code: string; message: string } };

describe('admin API authentication', () => {
  it('refuses every route but /health without the right bearer token, with the same 401', async () => {
    expect((await t.admin('GET', '/health', undefined, null)).status).toBe(200);
    const routes: [string, string, unknown?][] = [
      ['GET', '/v1/hosts'],
      ['GET', '/v1/hosts/x'],
      ['POST', '/v1/enroll', { name: 'x', address: '127.0.0.1' }],
      ['POST', '/v1/tokens', { name: 'x' }],
      ['GET', '/v1/tokens'],
      ['POST', '/v1/hosts/x/decommission'],
      ['POST', '/v1/check', {}],
      ['GET', '/v1/audit'],
      ['GET', '/v1/audit/verify'],
      ['GET', '/metrics'],
      ['GET', '/no-such-route'],
    ];
    for (const [method, path, body] of routes) {
      for (const token of [null, 'wrong', `${t.adminToken}x`, '']) {
        const res = await t.admin<Err>(method, path, body, token);
        expect([path, res.status, res.body]).toEqual([
          path,
          401,
          { error: { code: ErrorCode.UNAUTHENTICATED, message: 'missing or invalid admin token' } },
        ]);
      }
    }
    expect((await t.admin<HostListResponse>('GET', '/v1/hosts')).status).toBe(200);
  });
});

describe('enrollment by bundle', () => {
  it('issues both identities, pins them, and records a pending host with its ports and labels', async () => {
    const res = await t.admin<EnrollResponse>('POST', '/v1/enroll', {
      name: 'db-1',
      address: '10.0.0.7',
      agentPort: 9001,
      updaterPort: 9002,
      sans: ['db-1.internal', '10.0.0.8'],
      labels: { tier: 'db', zone: 'a' },
    });
    expect(res.status).toBe(200);
    const e = res.body;
    expect(e.manifest).toMatchObject({
      hostId: e.hostId,
      hostName: 'db-1',
      address: '10.0.0.7',
      agentPort: 9001,
      updaterPort: 9002,
      controller: t.endpoints.worker,
      caFingerprint: t.identity.ca.fingerprint,
      controllerClientFingerprint: t.identity.client.fingerprint,
    });
    const agent = identityFromPem(e.agent.certPem);
    expect(agent).toMatchObject({ role: 'agent', hostId: e.hostId, fingerprint: e.agent.fingerprint });
    expect(identityFromPem(e.updater.certPem)).toMatchObject({ role: 'updater', hostId: e.hostId });

    const dir = await mkdtemp(join(tmpdir(), 'corral-bundle-'));
    try {
      await writeBundle(dir, {
        caPem: e.caPem,
        manifest: e.manifest,
        identities: { agent: e.agent, updater: e.updater },
      });
      const bundle = await loadBundle(dir);
      expect(bundle.identities.agent?.fingerprint).toBe(e.agent.fingerprint);
      expect((await stat(join(dir, 'agent.key'))).mode & 0o777).toBe(0o600);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }

    const detail = (await t.admin<HostDetail>('GET', '/v1/hosts/db-1')).body;
    expect(detail).toMatchObject({
      host: {
        status: 'pending',
        agentPort: 9001,
        updaterPort: 9002,
        labels: { tier: 'db', zone: 'a' },
        agentFingerprint: e.agent.fingerprint,
        updaterFingerprint: e.updater.fingerprint,
        lastSeen: null,
      },
      sans: ['db-1.internal', '10.0.0.8'],
      enrolledVia: 'bundle',
    });
    expect(detail.pins.map((p) => p.role).sort()).toEqual(['agent', 'updater']);
  });

  it('defaults the worker ports, and refuses duplicate, reserved and malformed names', async () => {
    const first = await t.enroll('web-9');
    expect([first.manifest.agentPort, first.manifest.updaterPort]).toEqual([8765, 8766]);
    const dup = await t.admin<Err>('POST', '/v1/enroll', { name: 'web-9', address: '127.0.0.1' });
    expect([dup.status, dup.body.error.code]).toEqual([409, ErrorCode.NAME_TAKEN]);
    expect(dup.body.error.message).toContain('web-9');
    for (const reserved of ['controller', 'controller-client', 'agent', 'updater', 'operator', 'localhost']) {
      const res = await t.admin<Err>('POST', '/v1/enroll', { name: reserved, address: '127.0.0.1' });
      expect([reserved, res.status, res.body.error.code]).toEqual([reserved, 400, ErrorCode.NAME_RESERVED]);
    }
    for (const bad of ['Web', 'web_1', '-web', 'web-', 'a'.repeat(64), 'we b', '']) {
      const res = await t.admin<Err>('POST', '/v1/enroll', { name: bad, address: '127.0.0.1' });
      expect([bad, res.status, res.body.error.code]).toEqual([bad, 400, ErrorCode.VALIDATION]);
    }
    const extra = await t.admin<Err>('POST', '/v1/enroll', {
      name: 'web-10',
      address: '127.0.0.1',
      admin: true,
    });
    expect(extra.status).toBe(400);
  });

  it('keeps name uniqueness under concurrent enrollments', async () => {
    const results = await Promise.all(
      Array.from({ length: 5 }, () =>
        t.admin<Err>('POST', '/v1/enroll', { name: 'race-1', address: '127.0.0.1' }),
      ),
    );
    expect(results.map((r) => r.status).sort()).toEqual([200, 409, 409, 409, 409]);
  });
});

describe('controller init', () => {
  it('is idempotent: running it again changes nothing', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'corral-init-'));
    try {
      const first = await initControllerState({ stateDir: dir, addresses: ['ctl.example', '192.0.2.10'] });
      expect(first.created).toEqual([
        'ca',
        'database',
        'server-certificate',
        'client-certificate',
        'admin-token',
      ]);
      const second = await initControllerState({ stateDir: dir, addresses: ['ctl.example', '192.0.2.10'] });
      expect(second).toMatchObject({
        created: [],
        caFingerprint: first.caFingerprint,
        addressesIgnored: false,
      });
      const third = await initControllerState({ stateDir: dir, addresses: ['other.example'] });
      expect(third).toMatchObject({
        created: [],
        addresses: ['ctl.example', '192.0.2.10'],
        addressesIgnored: true,
      });
      for (const [file, mode] of [
        ['admin-token', 0o600],
        ['ca/ca.key', 0o600],
        ['tls/controller.key', 0o600],
        ['tls/controller-client.key', 0o600],
        ['.', 0o700],
        ['tls', 0o700],
      ] as const) {
        expect([file, (await stat(join(dir, file))).mode & 0o777]).toEqual([file, mode]);
      }
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

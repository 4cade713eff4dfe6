/**
 * The admin API over TLS from another machine: a controller serving `--admin-tls` on its
 * veth address is reached from a separate network namespace by `corral --profile` with an
 * operator certificate bundle; the CLI verifies the controller against the bundle's CA, the
 * controller lets in only pinned operator certificates (one signed by the same CA but never
 * pinned is refused), and the audit names the certificate's operator. Plain HTTP off
 * loopback is refused at start.
 */
import { execFile } from 'node:child_process';
import { mkdtemp, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ensurePrivateDir, PRIVATE_FILE_MODE, writeFileAtomic } from '../pki/index.js';
import type { AuditEntry } from '../protocol/admin-audit.js';
import { corral, startController, type TestController } from './controller-fixture.js';
import { createWorkerNamespaces, NETNS_SUBNETS, netnsUnavailable, type Namespaces } from './netns-fixture.js';

const SUBNET = NETNS_SUBNETS.adminTls;
const unavailable = await netnsUnavailable(SUBNET);
const ROOT = join(import.meta.dirname, '..');

let work: string;
beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'corral-admin-tls-'));
});
afterAll(async () => {
  await rm(work, { recursive: true, force: true });
});

describe('plain HTTP off loopback', () => {
  it('is refused at start with a clear error', async () => {
    const dir = join(work, 'plain');
    expect((await corral(['controller', 'init', '--state-dir', dir])).code).toBe(0);
    const served = await corral([
      'controller',
      'serve',
      '--state-dir',
      dir,
      '--admin-listen',
      '0.0.0.0:0',
      '--worker-listen',
      '127.0.0.1:0',
    ]);
    expect(served.code).not.toBe(0);
    expect(served.stderr).toContain('may listen only on loopback, not 0.0.0.0');
    expect(served.stderr).toContain('--admin-tls');
  }, 60_000);
});

describe.skipIf(unavailable !== undefined)(
  `operator certificates from another namespace (${unavailable ?? 'netns'})`,
  () => {
    let net: Namespaces;
    let t: TestController;
    const env = (): Record<string, string> => ({ HOME: join(work, 'home'), XDG_CONFIG_HOME: '' });

    beforeAll(async () => {
      net = await createWorkerNamespaces(1, SUBNET);
      const gateway = net.namespaces[0]?.gateway ?? '';
      const dir = join(work, 'ctl');
      // The certificate operator is made while the admin API is still plain on loopback.
      const local = await startController({ dir, addresses: [gateway] });
      const made = await corral([
        'controller',
        'operators',
        'create',
        'laptop',
        '--scope',
        'read,enroll',
        '--cert',
        '--out-dir',
        join(work, 'laptop'),
        '--state-dir',
        dir,
        '--url',
        local.endpoints.admin,
      ]);
      expect(made.code, made.stderr).toBe(0);
      await local.close();
      t = await startController({ dir, adminTls: 'cert', adminHost: gateway, addresses: [gateway] });
    }, 120_000);
    afterAll(async () => {
      await t?.close();
      expect(await net?.cleanup()).toEqual([]);
    });

    it('writes the bundle 0600 and a profile 0600', async () => {
      for (const f of ['ca.crt', 'operator.crt', 'operator.key'])
        expect((await stat(join(work, 'laptop', f))).mode & 0o777).toBe(0o600);
      expect(t.endpoints.admin).toMatch(/^https:\/\/10\.233\.1\.1:\d+$/);
      const added = await corral(
        ['profile', 'add', 'remote', '--url', t.endpoints.admin, '--bundle', join(work, 'laptop')],
        env(),
      );
      expect(added.code, added.stderr).toBe(0);
      expect((await stat(join(work, 'home', '.config', 'corral', 'profiles.json'))).mode & 0o777).toBe(0o600);
    });

    it('a pinned operator certificate reaches the admin API from the namespace; the audit names it', async () => {
      const ns = net.namespaces[0];
      if (!ns) throw new Error('no namespace');
      const inside = async (args: string[]) =>
        new Promise<{ code: number; stdout: string; stderr: string }>((resolve) => {
          execFile(
            ns.prefix[0] ?? 'ip',
            [...ns.prefix.slice(1), process.execPath, join(ROOT, 'bin', 'corral.js'), ...args],
            { env: { ...process.env, ...env() } },
            (err, stdout, stderr) =>
              resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr }),
          );
        });
      const hosts = await inside(['--profile', 'remote', 'controller', 'hosts', '--json']);
      expect(hosts.stderr).toBe('');
      expect(hosts.code).toBe(0);
      const token = await inside([
        '--profile',
        'remote',
        'controller',
        'token',
        'create',
        '--name',
        'web-1',
        '--json',
      ]);
      expect(token.code, token.stderr).toBe(0);
      const audit = await inside(['--profile', 'remote', 'controller', 'audit', '--json']);
      expect(audit.code, audit.stderr).toBe(0);
      const entries = JSON.parse(audit.stdout) as AuditEntry[];
      expect(entries.filter((e) => e.action === 'token-create').map((e) => e.actor)).toEqual(['laptop']);
    }, 60_000);

    it('an operator certificate from the same CA that was never pinned is refused', async () => {
      const rogue = await t.identity.ca.issue({ role: 'operator', commonName: 'mallory' });
      const dir = join(work, 'mallory');
      await ensurePrivateDir(dir);
      await writeFileAtomic(join(dir, 'ca.crt'), t.identity.ca.certPem, PRIVATE_FILE_MODE);
      await writeFileAtomic(join(dir, 'operator.crt'), rogue.certPem, PRIVATE_FILE_MODE);
      await writeFileAtomic(join(dir, 'operator.key'), rogue.keyPem, PRIVATE_FILE_MODE);
      expect(
        (await corral(['profile', 'add', 'rogue', '--url', t.endpoints.admin, '--bundle', dir], env())).code,
      ).toBe(0);
      const refused = await corral(['--profile', 'rogue', 'controller', 'hosts', '--json'], env());
      expect(refused.code).toBe(1);
      expect(refused.stderr).toContain('CORRAL_ERR_UNAUTHENTICATED');
    }, 60_000);
  },
);

import { mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { X509Certificate as NodeX509 } from 'node:crypto';
import * as x509 from '@peculiar/x509';
import { afterEach, describe, expect, it } from 'vitest';
import { CA_CERT_FILE, CA_KEY_FILE, loadCa, loadOrCreateCa } from './ca.js';
import { isPkiError, PkiErrorCode } from './errors.js';
import { fingerprintPem, normalizeFingerprint } from './fingerprint.js';
import { identityFromPem } from './identity.js';
import { chmod } from 'node:fs/promises';

const dirs: string[] = [];
async function tempDir(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'corral-ca-'));
  dirs.push(dir);
  return dir;
}
afterEach(async () => {
  await Promise.all(dirs.splice(0).map((d) => rm(d, { recursive: true, force: true })));
});

describe('certificate authority', () => {
  it('is created once: a second load returns the same CA and fingerprint', async () => {
    const dir = join(await tempDir(), 'ca');
    const first = await loadOrCreateCa(dir);
    const second = await loadOrCreateCa(dir);
    expect(second.fingerprint).toBe(first.fingerprint);
    expect(second.certPem).toBe(first.certPem);
    expect(first.fingerprint).toBe(fingerprintPem(await readFile(join(dir, CA_CERT_FILE), 'utf8')));
  });

  it('survives two concurrent creators with one CA', async () => {
    const dir = join(await tempDir(), 'ca');
    const [a, b] = await Promise.all([loadOrCreateCa(dir), loadOrCreateCa(dir)]);
    expect(a.fingerprint).toBe(b.fingerprint);
  });

  it('keeps its key 0600 in a 0700 directory and marks itself a CA with pathLen 0', async () => {
    const dir = join(await tempDir(), 'ca');
    const ca = await loadOrCreateCa(dir);
    expect((await stat(join(dir, CA_KEY_FILE))).mode & 0o777).toBe(0o600);
    expect((await stat(dir)).mode & 0o777).toBe(0o700);
    const cert = new NodeX509(ca.certPem);
    expect(cert.ca).toBe(true);
    expect(cert.publicKey.asymmetricKeyDetails?.namedCurve).toBe('prime256v1');
    const text = cert.toString();
    expect(text.length).toBeGreaterThan(0);
    const parsed = new x509.X509Certificate(ca.certPem).getExtension(x509.BasicConstraintsExtension);
    expect(parsed).toMatchObject({ critical: true, ca: true, pathLength: 0 });
  });

  it('creates RSA CAs on request', async () => {
    const dir = join(await tempDir(), 'ca');
    const ca = await loadOrCreateCa(dir, { algorithm: 'rsa-3072' });
    expect(new NodeX509(ca.certPem).publicKey.asymmetricKeyDetails?.modulusLength).toBe(3072);
    const leaf = await ca.issue({ role: 'controller', commonName: 'controller', dnsNames: ['localhost'] });
    expect(new NodeX509(leaf.certPem).verify(new NodeX509(ca.certPem).publicKey)).toBe(true);
  });

  it('refuses to load a CA whose key others can read', async () => {
    const dir = join(await tempDir(), 'ca');
    await loadOrCreateCa(dir);
    await chmod(join(dir, CA_KEY_FILE), 0o644);
    await expect(loadCa(dir)).rejects.toSatisfy((e: unknown) => isPkiError(e, PkiErrorCode.KEY_PERMISSIONS));
  });

  it('reports a missing certificate as an incomplete CA', async () => {
    const dir = join(await tempDir(), 'ca');
    await loadOrCreateCa(dir);
    await rm(join(dir, CA_CERT_FILE));
    await expect(loadCa(dir)).rejects.toSatisfy((e: unknown) => isPkiError(e, PkiErrorCode.CA_INCOMPLETE));
  });
});

describe('leaf certificates', () => {
  it('carry role and host id in SAN URIs, EKUs per role, and stable fingerprints', async () => {
    const ca = await loadOrCreateCa(join(await tempDir(), 'ca'));
    const agent = await ca.issue({
      role: 'agent',
      hostId: 'h-1',
      commonName: 'web-1',
      ipAddresses: ['10.1.2.3'],
    });
    const id = identityFromPem(agent.certPem);
    expect(id).toMatchObject({ role: 'agent', hostId: 'h-1', fingerprint: agent.fingerprint });
    expect(fingerprintPem(agent.certPem)).toBe(agent.fingerprint);
    expect(agent.fingerprint).toMatch(/^[0-9a-f]{64}$/);
    const cert = new NodeX509(agent.certPem);
    expect(cert.subjectAltName).toContain('IP Address:10.1.2.3');
    expect(cert.keyUsage).toEqual(expect.arrayContaining(['1.3.6.1.5.5.7.3.1', '1.3.6.1.5.5.7.3.2']));

    const client = await ca.issue({ role: 'controller-client', commonName: 'controller' });
    expect(new NodeX509(client.certPem).keyUsage).toEqual(['1.3.6.1.5.5.7.3.2']);
    const updater = await ca.issue({ role: 'updater', hostId: 'h-1', commonName: 'web-1' });
    expect(new NodeX509(updater.certPem).keyUsage).toEqual(['1.3.6.1.5.5.7.3.1']);
  });

  it('uses distinct random serials', async () => {
    const ca = await loadOrCreateCa(join(await tempDir(), 'ca'));
    const a = await ca.issue({ role: 'operator', commonName: 'ops' });
    const b = await ca.issue({ role: 'operator', commonName: 'ops' });
    expect(new NodeX509(a.certPem).serialNumber).not.toBe(new NodeX509(b.certPem).serialNumber);
  });

  it('refuses a worker role without a host id and a host id on a non-worker role', async () => {
    const ca = await loadOrCreateCa(join(await tempDir(), 'ca'));
    await expect(ca.issue({ role: 'agent', commonName: 'x' })).rejects.toSatisfy((e: unknown) =>
      isPkiError(e, PkiErrorCode.BAD_PARAMETER),
    );
    await expect(ca.issue({ role: 'controller', hostId: 'h-1', commonName: 'x' })).rejects.toSatisfy(
      (e: unknown) => isPkiError(e, PkiErrorCode.BAD_PARAMETER),
    );
  });

  it('normalizes the pin forms operators paste', () => {
    const hex = 'ab'.repeat(32);
    expect(normalizeFingerprint(`sha256:${hex.toUpperCase()}`)).toBe(hex);
    expect(normalizeFingerprint(hex.match(/../g)!.join(':'))).toBe(hex);
    expect(normalizeFingerprint('sha256:abc')).toBeUndefined();
  });
});

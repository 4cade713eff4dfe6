import { X509Certificate as NodeX509, generateKeyPairSync } from 'node:crypto';
import * as x509 from '@peculiar/x509';
import { beforeAll, describe, expect, it } from 'vitest';
import { createCa, type CertificateAuthority } from './ca.js';
import { createCsr, signCsr } from './csr.js';
import { PkiErrorCode } from './errors.js';
import { identityFromPem } from './identity.js';

let ca: CertificateAuthority;
beforeAll(async () => {
  ca = await createCa();
});

describe('certificate signing requests', () => {
  it('round trip: worker makes key and CSR, controller signs with its own role decision', async () => {
    const { csrPem, keyPem } = await createCsr('i-want-to-be-controller');
    const issued = await signCsr(ca, csrPem, { role: 'agent', hostId: 'h-42', commonName: 'web-42' });
    const id = identityFromPem(issued.certPem);
    expect(id).toMatchObject({ role: 'agent', hostId: 'h-42', fingerprint: issued.fingerprint });
    const cert = new NodeX509(issued.certPem);
    expect(cert.subject).toContain('CN=web-42');
    expect(cert.checkPrivateKey((await import('node:crypto')).createPrivateKey(keyPem))).toBe(true);
    expect(cert.verify(new NodeX509(ca.certPem).publicKey)).toBe(true);
  });

  it('refuses a CSR that asks to be a CA', async () => {
    const keys = await globalThis.crypto.subtle.generateKey({ name: 'ECDSA', namedCurve: 'P-256' }, true, [
      'sign',
      'verify',
    ]);
    const csr = await x509.Pkcs10CertificateRequestGenerator.create({
      name: 'CN=sneaky',
      keys,
      signingAlgorithm: { name: 'ECDSA', hash: 'SHA-256' },
      extensions: [new x509.BasicConstraintsExtension(true, 0, true)],
    });
    await expect(
      signCsr(ca, csr.toString('pem'), { role: 'agent', hostId: 'h-1', commonName: 'x' }),
    ).rejects.toMatchObject({
      code: PkiErrorCode.CSR_REQUESTS_CA,
    });
  });

  it('refuses a CSR with a weak RSA key', async () => {
    // WebCrypto will not make a 1024-bit key for us; Node's own generator will.
    const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 1024 });
    const der = privateKey.export({ format: 'der', type: 'pkcs8' });
    const alg = { name: 'RSASSA-PKCS1-v1_5', hash: 'SHA-256' };
    const subtle = globalThis.crypto.subtle;
    const priv = await subtle.importKey('pkcs8', der, alg, true, ['sign']);
    const jwk = await subtle.exportKey('jwk', priv);
    const pub = await subtle.importKey('jwk', { kty: 'RSA', n: jwk.n ?? '', e: jwk.e ?? '' }, alg, true, [
      'verify',
    ]);
    const csr = await x509.Pkcs10CertificateRequestGenerator.create({
      name: 'CN=weak',
      keys: { privateKey: priv, publicKey: pub },
      signingAlgorithm: alg,
    });
    await expect(
      signCsr(ca, csr.toString('pem'), { role: 'agent', hostId: 'h-1', commonName: 'x' }),
    ).rejects.toMatchObject({
      code: PkiErrorCode.CSR_WEAK_KEY,
    });
  });

  it('refuses a CSR on a curve Corral does not accept', async () => {
    const keys = await globalThis.crypto.subtle.generateKey({ name: 'ECDSA', namedCurve: 'P-521' }, true, [
      'sign',
      'verify',
    ]);
    const csr = await x509.Pkcs10CertificateRequestGenerator.create({
      name: 'CN=odd-curve',
      keys,
      signingAlgorithm: { name: 'ECDSA', hash: 'SHA-512' },
    });
    await expect(
      signCsr(ca, csr.toString('pem'), { role: 'agent', hostId: 'h-1', commonName: 'x' }),
    ).rejects.toMatchObject({
      code: PkiErrorCode.CSR_WEAK_KEY,
    });
  });

  it('refuses a CSR whose signature was forged (subject changed after signing)', async () => {
    const { csrPem } = await createCsr('honest-name');
    const csr = new x509.Pkcs10CertificateRequest(csrPem);
    const der = new Uint8Array(csr.rawData);
    // The CN bytes sit inside the signed part; change one and keep the old signature.
    const at = Buffer.from(der).indexOf(Buffer.from('honest-name'));
    expect(at).toBeGreaterThan(0);
    der[at] = 'H'.charCodeAt(0);
    const forged = x509.PemConverter.encode(der, 'CERTIFICATE REQUEST');
    await expect(
      signCsr(ca, forged, { role: 'agent', hostId: 'h-1', commonName: 'x' }),
    ).rejects.toMatchObject({
      code: PkiErrorCode.CSR_BAD_SIGNATURE,
    });
  });

  it('refuses garbage and oversize input with CORRAL_ERR_CSR_INVALID', async () => {
    const profile = { role: 'agent', hostId: 'h-1', commonName: 'x' } as const;
    await expect(signCsr(ca, 'not a csr', profile)).rejects.toMatchObject({ code: PkiErrorCode.CSR_INVALID });
    await expect(signCsr(ca, 'A'.repeat(20_000), profile)).rejects.toMatchObject({
      code: PkiErrorCode.CSR_INVALID,
    });
  });

  it('refuses DER that is not strictly one request (trailing bytes, cut short, indefinite length, wrong label)', async () => {
    const profile = { role: 'agent', hostId: 'h-1', commonName: 'x' } as const;
    const { csrPem } = await createCsr('strict');
    const der = Buffer.from(new x509.Pkcs10CertificateRequest(csrPem).rawData);
    const pem = (bytes: Buffer, label = 'CERTIFICATE REQUEST'): string =>
      `-----BEGIN ${label}-----\n${bytes.toString('base64')}\n-----END ${label}-----\n`;
    const indefinite = Buffer.concat([Buffer.from([0x30, 0x80]), der.subarray(3), Buffer.from([0, 0])]);
    for (const bad of [
      pem(Buffer.concat([der, Buffer.from([0x00])])),
      pem(der.subarray(0, der.length - 1)),
      pem(indefinite),
      pem(der, 'CERTIFICATE'),
      `${csrPem}${csrPem}`,
    ]) {
      await expect(signCsr(ca, bad, profile)).rejects.toMatchObject({ code: PkiErrorCode.CSR_INVALID });
    }
  });

  it('refuses a request signed with SHA-1', async () => {
    const alg = { name: 'RSASSA-PKCS1-v1_5', hash: 'SHA-1' };
    const keys = await globalThis.crypto.subtle.generateKey(
      { ...alg, modulusLength: 2048, publicExponent: new Uint8Array([1, 0, 1]) },
      true,
      ['sign', 'verify'],
    );
    const csr = await x509.Pkcs10CertificateRequestGenerator.create({
      name: 'CN=sha1',
      keys,
      signingAlgorithm: alg,
    });
    await expect(
      signCsr(ca, csr.toString('pem'), { role: 'agent', hostId: 'h-1', commonName: 'x' }),
    ).rejects.toMatchObject({ code: PkiErrorCode.CSR_BAD_SIGNATURE });
  });

  it('refuses a key whose point is not on its curve', async () => {
    const { csrPem } = await createCsr('off-curve');
    const der = Buffer.from(new x509.Pkcs10CertificateRequest(csrPem).rawData);
    const point = Buffer.from(new x509.Pkcs10CertificateRequest(csrPem).publicKey.rawData).subarray(-64);
    const at = der.indexOf(point);
    expect(at).toBeGreaterThan(0);
    der[at + 63] = (der[at + 63] ?? 0) ^ 0x01;
    const pem = `-----BEGIN CERTIFICATE REQUEST-----\n${der.toString('base64')}\n-----END CERTIFICATE REQUEST-----\n`;
    await expect(signCsr(ca, pem, { role: 'agent', hostId: 'h-1', commonName: 'x' })).rejects.toMatchObject({
      code: PkiErrorCode.CSR_WEAK_KEY,
    });
  });
});

import { X509Certificate as NodeX509, generateKeyPairSync } from 'node:crypto';
import * as x509 from '@peculiar/x509';
import { beforeAll, describe, expect, it } from 'vitest';
import { createCa, type CertificateAuthority } from './ca.js';
import { createCsr, signCsr } from './csr.js';
import { PkiErrorCode } from './errors.js';
import { identityFromPem } from './identity.js';
import { generateKeyPair, signingAlgorithmFor } from './keys.js';

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
    const keys = await generateKeyPair();
    const csr = await x509.Pkcs10CertificateRequestGenerator.create({
      name: 'CN=sneaky',
      keys,
      signingAlgorithm: signingAlgorithmFor(keys.privateKey),
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
});

import { createPublicKey } from 'node:crypto';
import * as x509 from '@peculiar/x509';
import { fingerprintDer } from '../../pki/fingerprint.js';
import {
  DEFAULT_LEAF_VALIDITY_DAYS,
  NOT_BEFORE_SKEW_MS,
  randomSerial,
  wholeSeconds,
  type IssuedCertificate,
  type Issuer,
  type LeafProfile,
} from '../../pki/leaf.js';
import { pemEncode } from '../../pki/pem.js';
import { importPair, referenceSignCsr } from '../../test/peculiar-reference.js';

export * from '../../pki/csr.js';

/** The CA as the old path held it: a parsed certificate and a WebCrypto key, made once per CA. */
const references = new WeakMap<Issuer, Promise<{ cert: x509.X509Certificate; key: CryptoKey }>>();

function referenceOf(issuer: Issuer): Promise<{ cert: x509.X509Certificate; key: CryptoKey }> {
  let ref = references.get(issuer);
  if (!ref) {
    const certPem = (issuer as Issuer & { certPem?: unknown }).certPem;
    if (typeof certPem !== 'string') throw new Error('old issuer: the issuer carries no certificate');
    ref = importPair(issuer.key, createPublicKey(issuer.key)).then((keys) => ({
      cert: new x509.X509Certificate(certPem),
      key: keys.privateKey,
    }));
    references.set(issuer, ref);
  }
  return ref;
}

/**
 * signCsr as it was before issue 13: the request parsed and checked, and the certificate built
 * and signed, by @peculiar/x509 (test/peculiar-reference.ts), with the same profile, serial
 * and validity rules as the native signer.
 */
export async function signCsr(
  issuer: Issuer,
  csrPem: string,
  profile: LeafProfile,
): Promise<IssuedCertificate> {
  const now = Date.now();
  const notBefore = wholeSeconds(profile.notBefore ?? new Date(now - NOT_BEFORE_SKEW_MS));
  const notAfter = wholeSeconds(
    profile.notAfter ?? new Date(now + (profile.validityDays ?? DEFAULT_LEAF_VALIDITY_DAYS) * 86_400_000),
  );
  const der = Buffer.from(
    await referenceSignCsr(await referenceOf(issuer), csrPem, {
      ...profile,
      serialHex: randomSerial(),
      notBefore,
      notAfter,
    }),
  );
  return { certPem: pemEncode(der, 'CERTIFICATE'), fingerprint: fingerprintDer(der), notAfter };
}

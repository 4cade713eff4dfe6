import { webcrypto, type KeyObject } from 'node:crypto';
import * as x509 from '@peculiar/x509';
import {
  HOST_URI_PREFIX,
  ROLE_EKUS,
  ROLE_URI_PREFIX,
  escapeDnValue,
  type LeafProfile,
} from '../pki/index.js';

/**
 * Corral's signing path before issue 13, kept as a reference: the same certificates and
 * requests built with @peculiar/x509 (pure-JS ASN.1 over WebCrypto). Tests compare the native
 * encodings against it byte for byte; `bench enroll` times both in one run.
 */

x509.cryptoProvider.set(webcrypto as unknown as Crypto);
const subtle = webcrypto.subtle;

type Imported = { privateKey: CryptoKey; publicKey: CryptoKey };

function algorithmOf(key: KeyObject): EcKeyImportParams | RsaHashedImportParams {
  if (key.asymmetricKeyType === 'ec') {
    const curve = key.asymmetricKeyDetails?.namedCurve === 'secp384r1' ? 'P-384' : 'P-256';
    return { name: 'ECDSA', namedCurve: curve };
  }
  return { name: 'RSASSA-PKCS1-v1_5', hash: 'SHA-256' };
}

/** The WebCrypto keys @peculiar/x509 signs with, from node key objects. */
export async function importPair(privateKey: KeyObject, publicKey: KeyObject): Promise<Imported> {
  const alg = algorithmOf(privateKey);
  return {
    privateKey: await subtle.importKey(
      'pkcs8',
      privateKey.export({ format: 'der', type: 'pkcs8' }),
      alg,
      true,
      ['sign'],
    ),
    publicKey: await subtle.importKey('spki', publicKey.export({ format: 'der', type: 'spki' }), alg, true, [
      'verify',
    ]),
  };
}

function signingAlgorithmFor(key: CryptoKey): Algorithm | EcdsaParams {
  if (key.algorithm.name === 'ECDSA') {
    const curve = (key.algorithm as EcKeyAlgorithm).namedCurve;
    return { name: 'ECDSA', hash: curve === 'P-384' ? 'SHA-384' : 'SHA-256' };
  }
  return { name: 'RSASSA-PKCS1-v1_5', hash: 'SHA-256' };
}

/** The old createCa's certificate for these keys, serial and window. */
export async function referenceCa(
  keys: Imported,
  o: { commonName: string; serialHex: string; notBefore: Date; notAfter: Date },
): Promise<x509.X509Certificate> {
  return x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: o.serialHex,
    name: `CN=${escapeDnValue(o.commonName)}, O=Corral`,
    notBefore: o.notBefore,
    notAfter: o.notAfter,
    keys,
    signingAlgorithm: signingAlgorithmFor(keys.privateKey),
    extensions: [
      new x509.BasicConstraintsExtension(true, 0, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
    ],
  });
}

/** The old signLeaf: `profile` must carry serialHex, notBefore and notAfter. */
export async function referenceLeaf(
  ca: { cert: x509.X509Certificate; key: CryptoKey },
  publicKey: CryptoKey | x509.PublicKey,
  profile: LeafProfile & { serialHex: string; notBefore: Date; notAfter: Date },
): Promise<x509.X509Certificate> {
  const names: x509.JsonGeneralName[] = [{ type: 'url', value: `${ROLE_URI_PREFIX}${profile.role}` }];
  if (profile.hostId !== undefined) names.push({ type: 'url', value: `${HOST_URI_PREFIX}${profile.hostId}` });
  for (const dns of profile.dnsNames ?? []) names.push({ type: 'dns', value: dns });
  for (const ip of profile.ipAddresses ?? []) names.push({ type: 'ip', value: ip });
  const keyUsage =
    publicKey.algorithm.name === 'ECDSA'
      ? x509.KeyUsageFlags.digitalSignature | x509.KeyUsageFlags.keyAgreement
      : x509.KeyUsageFlags.digitalSignature | x509.KeyUsageFlags.keyEncipherment;
  return x509.X509CertificateGenerator.create({
    serialNumber: profile.serialHex,
    subject: `CN=${escapeDnValue(profile.commonName)}, O=Corral`,
    issuer: ca.cert.subject,
    notBefore: profile.notBefore,
    notAfter: profile.notAfter,
    publicKey,
    signingKey: ca.key,
    signingAlgorithm: signingAlgorithmFor(ca.key),
    extensions: [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(keyUsage, true),
      new x509.ExtendedKeyUsageExtension([...ROLE_EKUS[profile.role]], false),
      new x509.SubjectAlternativeNameExtension(names, false),
      await x509.SubjectKeyIdentifierExtension.create(publicKey),
      await x509.AuthorityKeyIdentifierExtension.create(ca.cert.publicKey),
    ],
  });
}

/** The old createCsr's request for these keys. */
export async function referenceCsr(
  keys: Imported,
  commonName: string,
): Promise<x509.Pkcs10CertificateRequest> {
  return x509.Pkcs10CertificateRequestGenerator.create({
    name: `CN=${escapeDnValue(commonName)}`,
    keys,
    signingAlgorithm: signingAlgorithmFor(keys.privateKey),
  });
}

/**
 * The old signCsr end to end (parse, self-signature check, CA-request check, then sign), for
 * timing beside the native path: returns the certificate's DER.
 */
export async function referenceSignCsr(
  ca: { cert: x509.X509Certificate; key: CryptoKey },
  csrPem: string,
  profile: LeafProfile & { serialHex: string; notBefore: Date; notAfter: Date },
): Promise<ArrayBuffer> {
  const csr = new x509.Pkcs10CertificateRequest(csrPem);
  if (!(await csr.verify())) throw new Error('reference: CSR signature does not match');
  const bc = csr.getExtension('2.5.29.19');
  if (bc && new x509.BasicConstraintsExtension(bc.rawData).ca)
    throw new Error('reference: CSR asks for a CA');
  return (await referenceLeaf(ca, csr.publicKey, profile)).rawData;
}

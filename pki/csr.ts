import type { KeyObject } from 'node:crypto';
import { distinguishedName, OID } from './certificate-builder.js';
import { bitString, implicitConstructed, sequence, smallInteger } from './der.js';
import { childrenOf, expectTag, oidText, readDer, type DerNode } from './der-reader.js';
import { isPkiError, PkiError, PkiErrorCode } from './errors.js';
import {
  DEFAULT_KEY_ALGORITHM,
  assertStrongPublicKey,
  exportPrivateKeyPem,
  generateKeyPair,
  type KeyAlgorithm,
} from './keys.js';
import { signLeaf, subjectKeyOf, type IssuedCertificate, type Issuer, type LeafProfile } from './leaf.js';
import { pemDecode, pemEncode } from './pem.js';
import { acceptedSignatureAlgorithm, signatureAlgorithmFor, signData, verifyData } from './signature.js';

/** Largest CSR PEM accepted, in bytes: a 4096-bit RSA request is well under this. */
export const MAX_CSR_PEM_BYTES = 16 * 1024;
const CSR_LABELS = ['CERTIFICATE REQUEST', 'NEW CERTIFICATE REQUEST'];

export interface CreatedCsr {
  readonly csrPem: string;
  readonly keyPem: string;
}

/**
 * Worker side: makes a key pair locally and a PKCS#10 request for it, subject `CN=<commonName>`
 * and no attributes. The key never leaves the caller.
 */
export async function createCsr(
  commonName: string,
  algorithm: KeyAlgorithm = DEFAULT_KEY_ALGORITHM,
): Promise<CreatedCsr> {
  const keys = await generateKeyPair(algorithm);
  const alg = signatureAlgorithmFor(keys.privateKey);
  const info = sequence(
    smallInteger(0),
    distinguishedName([[OID.commonName, commonName]]),
    subjectKeyOf(keys.publicKey).spki,
    implicitConstructed(0, Buffer.alloc(0)),
  );
  const signature = await signData(alg, info, keys.privateKey);
  const der = sequence(info, alg.identifier, bitString(signature));
  return { csrPem: pemEncode(der, 'CERTIFICATE REQUEST'), keyPem: exportPrivateKeyPem(keys.privateKey) };
}

/** A request whose self-signature checked out; only its key is used from here on. */
export interface VerifiedCsr {
  /** The requested public key, SPKI DER exactly as the request holds it. */
  readonly spki: Buffer;
  readonly publicKey: KeyObject;
}

interface ParsedCsr {
  readonly info: DerNode;
  readonly spki: DerNode;
  readonly attributes: DerNode;
  readonly signatureOid: string;
  readonly signatureParams: DerNode | undefined;
  readonly signature: Buffer;
}

function parseCsr(der: Buffer): ParsedCsr {
  const [info, sigAlg, sig, ...extra] = childrenOf(expectTag(readDer(der), 0x30, 'CertificationRequest'));
  if (extra.length > 0) throw new PkiError(PkiErrorCode.DER_INVALID, 'CertificationRequest has extra fields');
  const [version, subject, spki, attributes, ...more] = childrenOf(
    expectTag(info, 0x30, 'CertificationRequestInfo'),
  );
  if (more.length > 0)
    throw new PkiError(PkiErrorCode.DER_INVALID, 'CertificationRequestInfo has extra fields');
  const v = expectTag(version, 0x02, 'version');
  if (v.contents.length !== 1 || v.contents[0] !== 0) {
    throw new PkiError(PkiErrorCode.DER_INVALID, 'CSR version is not 1 (0)');
  }
  expectTag(subject, 0x30, 'subject');
  const spkiParts = childrenOf(expectTag(spki, 0x30, 'subjectPublicKeyInfo'));
  if (spkiParts.length !== 2)
    throw new PkiError(PkiErrorCode.DER_INVALID, 'subjectPublicKeyInfo is malformed');
  const [algOid, params, ...algExtra] = childrenOf(expectTag(sigAlg, 0x30, 'signatureAlgorithm'));
  if (algExtra.length > 0) throw new PkiError(PkiErrorCode.DER_INVALID, 'signatureAlgorithm is malformed');
  const bits = expectTag(sig, 0x03, 'signature');
  if (bits.contents[0] !== 0) throw new PkiError(PkiErrorCode.DER_INVALID, 'signature is not whole bytes');
  return {
    info: info as DerNode,
    spki: spki as DerNode,
    attributes: expectTag(attributes, 0xa0, 'attributes'),
    signatureOid: oidText(expectTag(algOid, 0x06, 'signature algorithm')),
    signatureParams: params,
    signature: bits.contents.subarray(1),
  };
}

/** True when the request's extensionRequest attribute asks for basicConstraints CA:true. */
function asksForCa(attributes: DerNode): boolean {
  for (const attribute of childrenOf(attributes)) {
    const [type, values] = childrenOf(expectTag(attribute, 0x30, 'attribute'));
    if (oidText(expectTag(type, 0x06, 'attribute type')) !== OID.extensionRequest) continue;
    for (const extensions of childrenOf(expectTag(values, 0x31, 'attribute values'))) {
      for (const ext of childrenOf(expectTag(extensions, 0x30, 'extensions'))) {
        const parts = childrenOf(expectTag(ext, 0x30, 'extension'));
        if (oidText(expectTag(parts[0], 0x06, 'extension id')) !== OID.basicConstraints) continue;
        const value = expectTag(parts[parts.length - 1], 0x04, 'extension value');
        const [first] = childrenOf(expectTag(readDer(value.contents), 0x30, 'basicConstraints'));
        if (first?.tag === 0x01 && first.contents[0] !== 0) return true;
      }
    }
  }
  return false;
}

/**
 * Parses and vets a CSR: it must be one well-formed PEM request (CORRAL_ERR_CSR_INVALID) with a
 * strong key (CORRAL_ERR_CSR_WEAK_KEY) and a valid self-signature by ECDSA or RSA PKCS#1 v1.5
 * over SHA-256/384/512 (CORRAL_ERR_CSR_BAD_SIGNATURE), and must not ask to be a CA
 * (CORRAL_ERR_CSR_REQUESTS_CA). Whatever names or other extensions it requests are ignored.
 */
export async function verifyCsr(csrPem: string): Promise<VerifiedCsr> {
  if (typeof csrPem !== 'string' || csrPem.length === 0 || csrPem.length > MAX_CSR_PEM_BYTES) {
    throw new PkiError(
      PkiErrorCode.CSR_INVALID,
      `CSR must be a PEM string of at most ${MAX_CSR_PEM_BYTES} bytes`,
    );
  }
  let parsed: ParsedCsr;
  try {
    parsed = parseCsr(pemDecode(csrPem, CSR_LABELS));
  } catch (e: unknown) {
    if (!isPkiError(e, PkiErrorCode.DER_INVALID)) throw e;
    throw new PkiError(PkiErrorCode.CSR_INVALID, `CSR is not a valid PKCS#10 request: ${e.message}`, {
      cause: e,
    });
  }
  const publicKey = assertStrongPublicKey(parsed.spki.bytes);
  const alg = acceptedSignatureAlgorithm(parsed.signatureOid);
  if (!alg) {
    throw new PkiError(
      PkiErrorCode.CSR_BAD_SIGNATURE,
      `CSR signature algorithm ${parsed.signatureOid} is not accepted`,
    );
  }
  const params = parsed.signatureParams;
  const paramsOk =
    alg.keyType === 'ec'
      ? params === undefined
      : params === undefined || (params.tag === 0x05 && params.contents.length === 0);
  if (!paramsOk || !(await verifyData(alg, parsed.info.bytes, publicKey, parsed.signature))) {
    throw new PkiError(PkiErrorCode.CSR_BAD_SIGNATURE, 'CSR signature does not match its key');
  }
  let ca: boolean;
  try {
    ca = asksForCa(parsed.attributes);
  } catch (e: unknown) {
    if (!isPkiError(e, PkiErrorCode.DER_INVALID)) throw e;
    throw new PkiError(PkiErrorCode.CSR_INVALID, `CSR attributes are malformed: ${e.message}`, { cause: e });
  }
  if (ca) throw new PkiError(PkiErrorCode.CSR_REQUESTS_CA, 'CSR asks for a CA certificate');
  return { spki: Buffer.from(parsed.spki.bytes), publicKey };
}

/**
 * Controller side: signs a vetted CSR. Role, host id and names come from `profile` (the
 * controller's decision), never from the request.
 */
export async function signCsr(
  issuer: Issuer,
  csrPem: string,
  profile: LeafProfile,
): Promise<IssuedCertificate> {
  const csr = await verifyCsr(csrPem);
  return signLeaf(issuer, { key: csr.publicKey, spki: csr.spki }, profile);
}

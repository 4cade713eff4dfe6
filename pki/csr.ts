import * as x509 from '@peculiar/x509';
import { PkiError, PkiErrorCode } from './errors.js';
import {
  DEFAULT_KEY_ALGORITHM,
  assertStrongPublicKey,
  exportPrivateKeyPem,
  generateKeyPair,
  signingAlgorithmFor,
  type KeyAlgorithm,
} from './keys.js';
import { pemText } from './keys.js';
import { escapeDnValue, signLeaf, type IssuedCertificate, type Issuer, type LeafProfile } from './leaf.js';

const BASIC_CONSTRAINTS_OID = '2.5.29.19';

/** Largest CSR PEM accepted, in bytes: a 4096-bit RSA request is well under this. */
export const MAX_CSR_PEM_BYTES = 16 * 1024;

export interface CreatedCsr {
  readonly csrPem: string;
  readonly keyPem: string;
}

/** Worker side: makes a key pair locally and a CSR for it. The key never leaves the caller. */
export async function createCsr(
  commonName: string,
  algorithm: KeyAlgorithm = DEFAULT_KEY_ALGORITHM,
): Promise<CreatedCsr> {
  const keys = await generateKeyPair(algorithm);
  const csr = await x509.Pkcs10CertificateRequestGenerator.create({
    name: `CN=${escapeDnValue(commonName)}`,
    keys,
    signingAlgorithm: signingAlgorithmFor(keys.privateKey),
  });
  return { csrPem: pemText(csr.toString('pem')), keyPem: await exportPrivateKeyPem(keys.privateKey) };
}

/**
 * Parses and vets a CSR: it must be well-formed, carry a valid self-signature, use a strong
 * key, and must not ask to be a CA. Whatever names or extensions it requests are ignored.
 */
export async function verifyCsr(csrPem: string): Promise<x509.Pkcs10CertificateRequest> {
  if (typeof csrPem !== 'string' || csrPem.length === 0 || csrPem.length > MAX_CSR_PEM_BYTES) {
    throw new PkiError(
      PkiErrorCode.CSR_INVALID,
      `CSR must be a PEM string of at most ${MAX_CSR_PEM_BYTES} bytes`,
    );
  }
  let csr: x509.Pkcs10CertificateRequest;
  try {
    csr = new x509.Pkcs10CertificateRequest(csrPem);
  } catch (e: unknown) {
    throw new PkiError(PkiErrorCode.CSR_INVALID, 'CSR is not a valid PKCS#10 request', { cause: e });
  }
  assertStrongPublicKey(new Uint8Array(csr.publicKey.rawData));
  let valid = false;
  try {
    valid = await csr.verify();
  } catch (e: unknown) {
    throw new PkiError(PkiErrorCode.CSR_BAD_SIGNATURE, 'CSR signature could not be verified', { cause: e });
  }
  if (!valid) throw new PkiError(PkiErrorCode.CSR_BAD_SIGNATURE, 'CSR signature does not match its key');
  const requested = csr.getExtension(BASIC_CONSTRAINTS_OID);
  if (requested && new x509.BasicConstraintsExtension(requested.rawData).ca) {
    throw new PkiError(PkiErrorCode.CSR_REQUESTS_CA, 'CSR asks for a CA certificate');
  }
  return csr;
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
  return signLeaf(issuer, csr.publicKey, profile);
}

import { sign as nodeSign, verify as nodeVerify, type KeyObject } from 'node:crypto';
import { nullValue, oid, sequence } from './der.js';
import { PkiError, PkiErrorCode } from './errors.js';
import { curveOf } from './keys.js';

type Hash = 'sha256' | 'sha384' | 'sha512';

/** An X.509 signature algorithm: the digest node:crypto signs with and its AlgorithmIdentifier. */
export interface SignatureAlgorithm {
  readonly hash: Hash;
  readonly keyType: 'ec' | 'rsa';
  /** AlgorithmIdentifier, DER (no parameters for ECDSA, NULL for RSA, as RFC 5758 / 4055 say). */
  readonly identifier: Buffer;
}

function algorithm(dotted: string, hash: Hash, keyType: 'ec' | 'rsa'): SignatureAlgorithm {
  const identifier = keyType === 'ec' ? sequence(oid(dotted)) : sequence(oid(dotted), nullValue());
  return { hash, keyType, identifier };
}

/** The signature algorithms Corral makes and accepts, by OID. */
const BY_OID: Readonly<Record<string, SignatureAlgorithm>> = {
  '1.2.840.10045.4.3.2': algorithm('1.2.840.10045.4.3.2', 'sha256', 'ec'),
  '1.2.840.10045.4.3.3': algorithm('1.2.840.10045.4.3.3', 'sha384', 'ec'),
  '1.2.840.10045.4.3.4': algorithm('1.2.840.10045.4.3.4', 'sha512', 'ec'),
  '1.2.840.113549.1.1.11': algorithm('1.2.840.113549.1.1.11', 'sha256', 'rsa'),
  '1.2.840.113549.1.1.12': algorithm('1.2.840.113549.1.1.12', 'sha384', 'rsa'),
  '1.2.840.113549.1.1.13': algorithm('1.2.840.113549.1.1.13', 'sha512', 'rsa'),
};

const ECDSA_SHA256 = '1.2.840.10045.4.3.2';
const ECDSA_SHA384 = '1.2.840.10045.4.3.3';
const RSA_SHA256 = '1.2.840.113549.1.1.11';

/** What a key of this kind signs with: SHA-256 (SHA-384 for P-384), ECDSA or PKCS#1 v1.5. */
export function signatureAlgorithmFor(key: KeyObject): SignatureAlgorithm {
  if (key.asymmetricKeyType === 'ec') {
    const curve = curveOf(key);
    if (!curve) throw new PkiError(PkiErrorCode.BAD_PARAMETER, 'unsupported EC curve');
    return BY_OID[curve === 'P-384' ? ECDSA_SHA384 : ECDSA_SHA256] as SignatureAlgorithm;
  }
  if (key.asymmetricKeyType === 'rsa') return BY_OID[RSA_SHA256] as SignatureAlgorithm;
  throw new PkiError(PkiErrorCode.BAD_PARAMETER, `unsupported key type ${key.asymmetricKeyType}`);
}

/** The accepted algorithm with this OID, or undefined (SHA-1, PSS, EdDSA, ...: not accepted). */
export function acceptedSignatureAlgorithm(dotted: string): SignatureAlgorithm | undefined {
  return BY_OID[dotted];
}

/**
 * Signs `data` (DER ECDSA signatures, as X.509 carries them). EC signatures are made on the
 * calling thread: on the fixed curves one costs less than handing it to the thread pool (about
 * 40 against 80 µs of CPU for P-256) and is bounded; RSA ones go to the thread pool. A failure
 * is CORRAL_ERR_PKI_BAD_PARAMETER: only a key that cannot sign gets here.
 */
export function signData(alg: SignatureAlgorithm, data: Uint8Array, key: KeyObject): Promise<Buffer> {
  if (key.asymmetricKeyType === 'ec') {
    try {
      return Promise.resolve(nodeSign(alg.hash, data, key));
    } catch (e: unknown) {
      return Promise.reject(new PkiError(PkiErrorCode.BAD_PARAMETER, 'signing failed', { cause: e }));
    }
  }
  return new Promise((resolve, reject) => {
    nodeSign(alg.hash, data, key, (err, signature) => {
      if (err) reject(new PkiError(PkiErrorCode.BAD_PARAMETER, 'signing failed', { cause: err }));
      else resolve(signature);
    });
  });
}

/**
 * Verifies a signature; false when it does not match (or cannot be checked). EC signatures
 * are checked on the calling thread (bounded, cheaper than the hand-off, as for signData);
 * RSA ones, whose cost grows with the requester's modulus and exponent, in the thread pool.
 */
export function verifyData(
  alg: SignatureAlgorithm,
  data: Uint8Array,
  key: KeyObject,
  signature: Uint8Array,
): Promise<boolean> {
  if (key.asymmetricKeyType !== alg.keyType) return Promise.resolve(false);
  if (alg.keyType === 'ec') {
    try {
      return Promise.resolve(nodeVerify(alg.hash, data, key, signature));
    } catch {
      // node:crypto failing to check it (a key it cannot use this way): not a match.
      return Promise.resolve(false);
    }
  }
  return new Promise((resolve) => {
    nodeVerify(alg.hash, data, key, signature, (err, ok) => resolve(err ? false : ok));
  });
}

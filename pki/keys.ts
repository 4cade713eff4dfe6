import {
  createPrivateKey,
  createPublicKey,
  generateKeyPair as generateNodeKeyPair,
  type JsonWebKey,
  type KeyObject,
} from 'node:crypto';
import { promisify } from 'node:util';
import { bitStringBytes, childrenOf, expectTag, oidText, readDer } from './der-reader.js';
import { isPkiError, PkiError, PkiErrorCode } from './errors.js';

const generate = promisify(generateNodeKeyPair);

export const KEY_ALGORITHMS = ['ecdsa-p256', 'ecdsa-p384', 'rsa-2048', 'rsa-3072', 'rsa-4096'] as const;
export type KeyAlgorithm = (typeof KEY_ALGORITHMS)[number];
export const DEFAULT_KEY_ALGORITHM: KeyAlgorithm = 'ecdsa-p256';

/** The smallest RSA modulus accepted in a CSR or key, in bits. */
export const MIN_RSA_BITS = 2048;
/** Curves accepted for EC keys, by Node's names for them. */
const ACCEPTED_CURVES: Record<string, 'P-256' | 'P-384'> = {
  prime256v1: 'P-256',
  'P-256': 'P-256',
  secp384r1: 'P-384',
  'P-384': 'P-384',
};

export interface KeyPair {
  readonly privateKey: KeyObject;
  readonly publicKey: KeyObject;
}

export function isKeyAlgorithm(value: string): value is KeyAlgorithm {
  return (KEY_ALGORITHMS as readonly string[]).includes(value);
}

/** A fresh key pair, made off the main thread. */
export async function generateKeyPair(alg: KeyAlgorithm = DEFAULT_KEY_ALGORITHM): Promise<KeyPair> {
  switch (alg) {
    case 'ecdsa-p256':
      return generate('ec', { namedCurve: 'P-256' });
    case 'ecdsa-p384':
      return generate('ec', { namedCurve: 'P-384' });
    case 'rsa-2048':
    case 'rsa-3072':
    case 'rsa-4096':
      return generate('rsa', { modulusLength: Number(alg.slice(4)), publicExponent: 0x10001 });
  }
}

/** The EC curve of a key, as Corral names it, or undefined for a curve it does not accept. */
export function curveOf(key: KeyObject): 'P-256' | 'P-384' | undefined {
  return ACCEPTED_CURVES[key.asymmetricKeyDetails?.namedCurve ?? ''];
}

/** PKCS#8 PEM of a private key. */
export function exportPrivateKeyPem(key: KeyObject): string {
  return pemText(key.export({ format: 'pem', type: 'pkcs8' }).toString());
}

/**
 * Imports a PKCS#8 (or SEC1/PKCS#1) PEM private key for signing: RSA, or EC on P-256/P-384.
 * Throws CORRAL_ERR_PKI_BAD_PARAMETER for anything else.
 */
export function importPrivateKeyPem(pem: string): KeyObject {
  let key: KeyObject;
  try {
    key = createPrivateKey(pem);
  } catch (e: unknown) {
    throw new PkiError(PkiErrorCode.BAD_PARAMETER, 'private key is not a valid PEM key', { cause: e });
  }
  if (key.asymmetricKeyType === 'ec') {
    if (!curveOf(key)) {
      throw new PkiError(
        PkiErrorCode.BAD_PARAMETER,
        `unsupported EC curve ${key.asymmetricKeyDetails?.namedCurve}`,
      );
    }
    return key;
  }
  if (key.asymmetricKeyType === 'rsa') return key;
  throw new PkiError(PkiErrorCode.BAD_PARAMETER, `unsupported key type ${key.asymmetricKeyType}`);
}

const EC_PUBLIC_KEY_OID = '1.2.840.10045.2.1';
const RSA_ENCRYPTION_OID = '1.2.840.113549.1.1.1';
/** Named curves by OID, with the byte length of a coordinate. */
const EC_CURVES: Readonly<Record<string, { readonly crv: 'P-256' | 'P-384'; readonly bytes: number }>> = {
  '1.2.840.10045.3.1.7': { crv: 'P-256', bytes: 32 },
  '1.3.132.0.34': { crv: 'P-384', bytes: 48 },
};

const b64url = (bytes: Uint8Array): string => Buffer.from(bytes).toString('base64url');
/** An INTEGER's contents as an unsigned magnitude (its sign byte dropped). */
const magnitude = (contents: Buffer): Buffer => (contents[0] === 0 ? contents.subarray(1) : contents);

/**
 * The JWK of an SPKI Corral accepts (an uncompressed P-256/P-384 point, or RSA), read from the
 * DER; undefined for anything else, which then goes through OpenSSL's own decoder.
 */
function jwkOfSpki(spki: Uint8Array): JsonWebKey | undefined {
  const [alg, bits, ...extra] = childrenOf(expectTag(readDer(spki), 0x30, 'SubjectPublicKeyInfo'));
  if (extra.length > 0) return undefined;
  const [algOid, params] = childrenOf(expectTag(alg, 0x30, 'algorithm'));
  const type = oidText(expectTag(algOid, 0x06, 'algorithm id'));
  const key = bitStringBytes(expectTag(bits, 0x03, 'subjectPublicKey'));
  if (type === EC_PUBLIC_KEY_OID && params?.tag === 0x06) {
    const curve = EC_CURVES[oidText(params)];
    if (!curve || key.length !== 1 + 2 * curve.bytes || key[0] !== 0x04) return undefined;
    return {
      kty: 'EC',
      crv: curve.crv,
      x: b64url(key.subarray(1, 1 + curve.bytes)),
      y: b64url(key.subarray(1 + curve.bytes)),
    };
  }
  if (type === RSA_ENCRYPTION_OID && params?.tag === 0x05) {
    const [n, e, ...more] = childrenOf(expectTag(readDer(key), 0x30, 'RSAPublicKey'));
    if (more.length > 0) return undefined;
    return {
      kty: 'RSA',
      n: b64url(magnitude(expectTag(n, 0x02, 'modulus').contents)),
      e: b64url(magnitude(expectTag(e, 0x02, 'publicExponent').contents)),
    };
  }
  return undefined;
}

/**
 * A public key object from SPKI DER. The kinds Corral accepts are imported through their JWK
 * (OpenSSL's generic DER decoder costs several times the signature check it serves); the
 * rest through the decoder. Throws CORRAL_ERR_PKI_DER_INVALID or node's own error.
 */
export function publicKeyFromSpki(spki: Uint8Array): KeyObject {
  const jwk = jwkOfSpki(spki);
  return jwk
    ? createPublicKey({ key: jwk, format: 'jwk' })
    : createPublicKey({ key: Buffer.from(spki), format: 'der', type: 'spki' });
}

/**
 * Checks a public key (SPKI DER) against Corral's floor: RSA of at least 2048 bits, or ECDSA
 * on P-256/P-384. Returns it as a key object; throws CORRAL_ERR_CSR_WEAK_KEY otherwise.
 */
export function assertStrongPublicKey(spkiDer: Uint8Array): KeyObject {
  let key: KeyObject;
  try {
    key = publicKeyFromSpki(spkiDer);
  } catch (e: unknown) {
    const what = isPkiError(e) ? e.message : 'unsupported kind';
    throw new PkiError(PkiErrorCode.CSR_WEAK_KEY, `public key is of an unsupported kind (${what})`, {
      cause: e,
    });
  }
  const details = key.asymmetricKeyDetails ?? {};
  if (key.asymmetricKeyType === 'rsa') {
    const bits = details.modulusLength ?? 0;
    if (bits < MIN_RSA_BITS) {
      throw new PkiError(
        PkiErrorCode.CSR_WEAK_KEY,
        `RSA key of ${bits} bits is below the ${MIN_RSA_BITS}-bit floor`,
      );
    }
    return key;
  }
  if (key.asymmetricKeyType === 'ec') {
    if (!curveOf(key)) {
      throw new PkiError(
        PkiErrorCode.CSR_WEAK_KEY,
        `EC curve ${details.namedCurve ?? 'unknown'} is not accepted`,
      );
    }
    return key;
  }
  throw new PkiError(
    PkiErrorCode.CSR_WEAK_KEY,
    `key type ${key.asymmetricKeyType ?? 'unknown'} is not accepted`,
  );
}

/** PEM text as files and TLS stacks expect it: LF line ends and a final newline, so PEMs concatenate. */
export function pemText(pem: string): string {
  const lf = pem.replace(/\r\n/g, '\n');
  return lf.endsWith('\n') ? lf : `${lf}\n`;
}

import { createPrivateKey, createPublicKey, webcrypto } from 'node:crypto';
import * as x509 from '@peculiar/x509';
import { PkiError, PkiErrorCode } from './errors.js';

x509.cryptoProvider.set(webcrypto as unknown as Crypto);

export const KEY_ALGORITHMS = ['ecdsa-p256', 'ecdsa-p384', 'rsa-2048', 'rsa-3072', 'rsa-4096'] as const;
export type KeyAlgorithm = (typeof KEY_ALGORITHMS)[number];
export const DEFAULT_KEY_ALGORITHM: KeyAlgorithm = 'ecdsa-p256';

/** The smallest RSA modulus accepted in a CSR or key, in bits. */
export const MIN_RSA_BITS = 2048;
/** Curves accepted for EC keys, by Node's name for them. */
const ACCEPTED_CURVES: Record<string, 'P-256' | 'P-384'> = {
  prime256v1: 'P-256',
  'P-256': 'P-256',
  secp384r1: 'P-384',
  'P-384': 'P-384',
};

export interface KeyPair {
  readonly privateKey: CryptoKey;
  readonly publicKey: CryptoKey;
}

export function isKeyAlgorithm(value: string): value is KeyAlgorithm {
  return (KEY_ALGORITHMS as readonly string[]).includes(value);
}

function generationParams(alg: KeyAlgorithm): RsaHashedKeyGenParams | EcKeyGenParams {
  switch (alg) {
    case 'ecdsa-p256':
      return { name: 'ECDSA', namedCurve: 'P-256' };
    case 'ecdsa-p384':
      return { name: 'ECDSA', namedCurve: 'P-384' };
    case 'rsa-2048':
    case 'rsa-3072':
    case 'rsa-4096':
      return {
        name: 'RSASSA-PKCS1-v1_5',
        hash: 'SHA-256',
        modulusLength: Number(alg.slice(4)),
        publicExponent: new Uint8Array([1, 0, 1]),
      };
  }
}

export async function generateKeyPair(alg: KeyAlgorithm = DEFAULT_KEY_ALGORITHM): Promise<KeyPair> {
  const params = generationParams(alg);
  const pair = (await webcrypto.subtle.generateKey(params, true, ['sign', 'verify'])) as KeyPair;
  return pair;
}

/** The signature algorithm a key of this kind signs with (SHA-256, or SHA-384 for P-384). */
export function signingAlgorithmFor(key: CryptoKey): Algorithm | EcdsaParams {
  if (key.algorithm.name === 'ECDSA') {
    const curve = (key.algorithm as EcKeyAlgorithm).namedCurve;
    return { name: 'ECDSA', hash: curve === 'P-384' ? 'SHA-384' : 'SHA-256' };
  }
  return { name: 'RSASSA-PKCS1-v1_5', hash: 'SHA-256' };
}

export async function exportPrivateKeyPem(key: CryptoKey): Promise<string> {
  const der = await webcrypto.subtle.exportKey('pkcs8', key);
  return pemText(x509.PemConverter.encode(der, 'PRIVATE KEY'));
}

/** Imports a PKCS#8 (or SEC1/PKCS#1) PEM private key as a signing CryptoKey. */
export async function importPrivateKeyPem(pem: string): Promise<CryptoKey> {
  let keyObject;
  try {
    keyObject = createPrivateKey(pem);
  } catch (e: unknown) {
    throw new PkiError(PkiErrorCode.BAD_PARAMETER, 'private key is not a valid PEM key', { cause: e });
  }
  const der = keyObject.export({ format: 'der', type: 'pkcs8' });
  const details = keyObject.asymmetricKeyDetails ?? {};
  if (keyObject.asymmetricKeyType === 'ec') {
    const curve = ACCEPTED_CURVES[details.namedCurve ?? ''];
    if (!curve) throw new PkiError(PkiErrorCode.BAD_PARAMETER, `unsupported EC curve ${details.namedCurve}`);
    return webcrypto.subtle.importKey('pkcs8', der, { name: 'ECDSA', namedCurve: curve }, false, ['sign']);
  }
  if (keyObject.asymmetricKeyType === 'rsa') {
    return webcrypto.subtle.importKey('pkcs8', der, { name: 'RSASSA-PKCS1-v1_5', hash: 'SHA-256' }, false, [
      'sign',
    ]);
  }
  throw new PkiError(PkiErrorCode.BAD_PARAMETER, `unsupported key type ${keyObject.asymmetricKeyType}`);
}

/**
 * Checks a public key (SPKI DER) against Corral's floor: RSA of at least 2048 bits, or ECDSA
 * on P-256/P-384. Throws CORRAL_ERR_CSR_WEAK_KEY otherwise.
 */
export function assertStrongPublicKey(spkiDer: Uint8Array): void {
  let key;
  try {
    key = createPublicKey({ key: Buffer.from(spkiDer), format: 'der', type: 'spki' });
  } catch (e: unknown) {
    throw new PkiError(PkiErrorCode.CSR_WEAK_KEY, 'public key is of an unsupported kind', { cause: e });
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
    return;
  }
  if (key.asymmetricKeyType === 'ec') {
    if (!ACCEPTED_CURVES[details.namedCurve ?? '']) {
      throw new PkiError(
        PkiErrorCode.CSR_WEAK_KEY,
        `EC curve ${details.namedCurve ?? 'unknown'} is not accepted`,
      );
    }
    return;
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

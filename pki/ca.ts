import { link, readFile, unlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import * as x509 from '@peculiar/x509';
import { setTimeout as sleep } from 'node:timers/promises';
import { isPkiError, PkiError, PkiErrorCode } from './errors.js';
import { fingerprintDer } from './fingerprint.js';
import { assertPrivateFile, ensurePrivateDir, PRIVATE_FILE_MODE, syncDir } from './fs-secure.js';
import {
  DEFAULT_KEY_ALGORITHM,
  exportPrivateKeyPem,
  generateKeyPair,
  importPrivateKeyPem,
  pemText,
  signingAlgorithmFor,
  type KeyAlgorithm,
} from './keys.js';
import {
  escapeDnValue,
  NOT_BEFORE_SKEW_MS,
  randomSerial,
  signLeaf,
  type IssuedCertificate,
  type Issuer,
  type LeafProfile,
} from './leaf.js';

export const CA_CERT_FILE = 'ca.crt';
export const CA_KEY_FILE = 'ca.key';
const RACE_RETRIES = 40;
const RACE_RETRY_MS = 50;

/** CA validity, in days (10 years). */
export const CA_VALIDITY_DAYS = 3650;

export interface CertificateAuthority extends Issuer {
  readonly certPem: string;
  readonly fingerprint: string;
  /** Issues a leaf with a fresh key made here (for bundles written on the controller). */
  issue(profile: LeafProfile, algorithm?: KeyAlgorithm): Promise<IssuedCertificate & { keyPem: string }>;
}

export interface CaOptions {
  readonly algorithm?: KeyAlgorithm;
  readonly commonName?: string;
}

function wrap(cert: x509.X509Certificate, key: CryptoKey): CertificateAuthority {
  const issuer: Issuer = { cert, key };
  return {
    cert,
    key,
    certPem: pemText(cert.toString('pem')),
    fingerprint: fingerprintDer(new Uint8Array(cert.rawData)),
    async issue(profile, algorithm = DEFAULT_KEY_ALGORITHM) {
      const keys = await generateKeyPair(algorithm);
      const issued = await signLeaf(issuer, keys.publicKey, profile);
      return { ...issued, keyPem: await exportPrivateKeyPem(keys.privateKey) };
    },
  };
}

/** Creates a CA in memory; nothing touches the disk. */
export async function createCa(options: CaOptions = {}): Promise<CertificateAuthority & { keyPem: string }> {
  const keys = await generateKeyPair(options.algorithm ?? DEFAULT_KEY_ALGORITHM);
  const now = Date.now();
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: randomSerial(),
    name: `CN=${escapeDnValue(options.commonName ?? 'Corral CA')}, O=Corral`,
    notBefore: new Date(now - NOT_BEFORE_SKEW_MS),
    notAfter: new Date(now + CA_VALIDITY_DAYS * 86_400_000),
    keys,
    signingAlgorithm: signingAlgorithmFor(keys.privateKey),
    extensions: [
      new x509.BasicConstraintsExtension(true, 0, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
    ],
  });
  return { ...wrap(cert, keys.privateKey), keyPem: await exportPrivateKeyPem(keys.privateKey) };
}

async function readIfExists(path: string): Promise<string | undefined> {
  try {
    return await readFile(path, 'utf8');
  } catch (e: unknown) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw e;
  }
}

/** Places `data` at `path` only if nothing is there yet (write temp, then link: no clobber). */
async function publishOnce(path: string, data: string, mode: number): Promise<boolean> {
  const tmp = `${path}.${randomBytes(6).toString('hex')}.tmp`;
  await writeFile(tmp, data, { mode, flag: 'wx' });
  try {
    await link(tmp, path);
    return true;
  } catch (e: unknown) {
    if ((e as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw e;
  } finally {
    await unlink(tmp);
  }
}

/** Loads the CA from `dir`; throws if it is missing, partial, or its key is not 0600. */
export async function loadCa(dir: string): Promise<CertificateAuthority> {
  const keyPath = join(dir, CA_KEY_FILE);
  const certPath = join(dir, CA_CERT_FILE);
  const [keyPem, certPem] = await Promise.all([readIfExists(keyPath), readIfExists(certPath)]);
  if (keyPem === undefined || certPem === undefined) {
    throw new PkiError(
      PkiErrorCode.CA_INCOMPLETE,
      `CA in ${dir} is incomplete: ${keyPem === undefined ? CA_KEY_FILE : CA_CERT_FILE} is missing`,
    );
  }
  await assertPrivateFile(keyPath);
  let cert: x509.X509Certificate;
  try {
    cert = new x509.X509Certificate(certPem);
  } catch (e: unknown) {
    throw new PkiError(PkiErrorCode.CA_INVALID, `${certPath} is not a certificate`, { cause: e });
  }
  const key = await importPrivateKeyPem(keyPem);
  const bc = cert.getExtension(x509.BasicConstraintsExtension);
  if (!bc?.ca) throw new PkiError(PkiErrorCode.CA_INVALID, `${certPath} is not a CA certificate`);
  return wrap(cert, key);
}

/**
 * Loads the CA in `dir`, creating it first if there is none. Idempotent and safe against a
 * concurrent caller: the key is published with a no-clobber link, so two racers end up with
 * the same CA. The key file is 0600 in a 0700 directory.
 */
export async function loadOrCreateCa(dir: string, options: CaOptions = {}): Promise<CertificateAuthority> {
  await ensurePrivateDir(dir);
  const keyPath = join(dir, CA_KEY_FILE);
  const certPath = join(dir, CA_CERT_FILE);
  const existingKey = await readIfExists(keyPath);
  if (existingKey === undefined) {
    const fresh = await createCa(options);
    const won = await publishOnce(keyPath, fresh.keyPem, PRIVATE_FILE_MODE);
    if (won) {
      await publishOnce(certPath, fresh.certPem, 0o644);
      await syncDir(dir);
      return fresh;
    }
    // Lost the race: the winner publishes its certificate right after its key.
    for (let attempt = 0; ; attempt++) {
      try {
        return await loadCa(dir);
      } catch (e: unknown) {
        if (!isPkiError(e, PkiErrorCode.CA_INCOMPLETE) || attempt >= RACE_RETRIES) throw e;
        await sleep(RACE_RETRY_MS);
      }
    }
  }
  return loadCa(dir);
}

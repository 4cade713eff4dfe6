import { link, readFile, unlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { randomBytes, X509Certificate as NodeX509, type KeyObject } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import {
  basicConstraintsValue,
  distinguishedName,
  extension,
  KEY_USAGE,
  keyIdentifier,
  OID,
  signCertificate,
  tbsCertificate,
} from './certificate-builder.js';
import { namedBits, octetString } from './der.js';
import { childrenOf, expectTag, readDer } from './der-reader.js';
import { isPkiError, PkiError, PkiErrorCode } from './errors.js';
import { fingerprintDer } from './fingerprint.js';
import { assertPrivateFile, ensurePrivateDir, PRIVATE_FILE_MODE, syncDir } from './fs-secure.js';
import {
  DEFAULT_KEY_ALGORITHM,
  exportPrivateKeyPem,
  generateKeyPair,
  importPrivateKeyPem,
  type KeyAlgorithm,
} from './keys.js';
import {
  NOT_BEFORE_SKEW_MS,
  randomSerial,
  serialBytes,
  signLeaf,
  subjectKeyOf,
  SUBJECT_ORGANIZATION,
  wholeSeconds,
  type IssuedCertificate,
  type Issuer,
  type LeafProfile,
} from './leaf.js';
import { pemEncode } from './pem.js';
import { signatureAlgorithmFor } from './signature.js';

export const CA_CERT_FILE = 'ca.crt';
export const CA_KEY_FILE = 'ca.key';
const RACE_RETRIES = 40;
const RACE_RETRY_MS = 50;

/** CA validity, in days (10 years). */
export const CA_VALIDITY_DAYS = 3650;

export interface CertificateAuthority extends Issuer {
  readonly certPem: string;
  readonly certDer: Buffer;
  readonly fingerprint: string;
  /** Issues a leaf with a fresh key made here (for bundles written on the controller). */
  issue(profile: LeafProfile, algorithm?: KeyAlgorithm): Promise<IssuedCertificate & { keyPem: string }>;
}

export interface CaOptions {
  readonly algorithm?: KeyAlgorithm;
  readonly commonName?: string;
}

/** The subject Name (DER) and SPKI of a certificate, as its TBSCertificate holds them. */
function subjectAndKey(der: Uint8Array): { subject: Buffer; spki: Buffer } {
  const [tbs] = childrenOf(expectTag(readDer(der), 0x30, 'Certificate'));
  const fields = childrenOf(expectTag(tbs, 0x30, 'TBSCertificate'));
  const rest = fields[0]?.tag === 0xa0 ? fields.slice(1) : fields;
  // serialNumber, signature, issuer, validity, subject, subjectPublicKeyInfo, ...
  const subject = expectTag(rest[4], 0x30, 'subject');
  const spki = expectTag(rest[5], 0x30, 'subjectPublicKeyInfo');
  return { subject: subject.bytes, spki: spki.bytes };
}

function wrap(certDer: Buffer, key: KeyObject): CertificateAuthority {
  const { subject, spki } = subjectAndKey(certDer);
  const issuer: Issuer = { subjectDer: subject, keyIdentifier: keyIdentifier(spki), key };
  return {
    ...issuer,
    certDer,
    certPem: pemEncode(certDer, 'CERTIFICATE'),
    fingerprint: fingerprintDer(certDer),
    async issue(profile, algorithm = DEFAULT_KEY_ALGORITHM) {
      const keys = await generateKeyPair(algorithm);
      const issued = await signLeaf(issuer, subjectKeyOf(keys.publicKey), profile);
      return { ...issued, keyPem: exportPrivateKeyPem(keys.privateKey) };
    },
  };
}

/**
 * Creates a CA in memory; nothing touches the disk. Self-signed, subject `CN=<commonName>,
 * O=Corral`; basicConstraints CA:true with pathLen 0 and keyUsage keyCertSign and cRLSign,
 * both critical; a subject key identifier.
 */
export async function createCa(options: CaOptions = {}): Promise<CertificateAuthority & { keyPem: string }> {
  const keys = await generateKeyPair(options.algorithm ?? DEFAULT_KEY_ALGORITHM);
  const { spki } = subjectKeyOf(keys.publicKey);
  const now = Date.now();
  const name = distinguishedName([
    [OID.commonName, options.commonName ?? 'Corral CA'],
    [OID.organizationName, SUBJECT_ORGANIZATION],
  ]);
  const alg = signatureAlgorithmFor(keys.privateKey);
  const tbs = tbsCertificate({
    serial: serialBytes(randomSerial()),
    signature: alg,
    issuer: name,
    notBefore: wholeSeconds(new Date(now - NOT_BEFORE_SKEW_MS)),
    notAfter: wholeSeconds(new Date(now + CA_VALIDITY_DAYS * 86_400_000)),
    subject: name,
    spki,
    extensions: [
      extension(OID.basicConstraints, true, basicConstraintsValue(true)),
      extension(OID.keyUsage, true, namedBits([KEY_USAGE.keyCertSign, KEY_USAGE.cRLSign])),
      extension(OID.subjectKeyIdentifier, false, octetString(keyIdentifier(spki))),
    ],
  });
  const der = await signCertificate(tbs, alg, keys.privateKey);
  return { ...wrap(der, keys.privateKey), keyPem: exportPrivateKeyPem(keys.privateKey) };
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
  let cert: NodeX509;
  try {
    cert = new NodeX509(certPem);
  } catch (e: unknown) {
    throw new PkiError(PkiErrorCode.CA_INVALID, `${certPath} is not a certificate`, { cause: e });
  }
  if (!cert.ca) throw new PkiError(PkiErrorCode.CA_INVALID, `${certPath} is not a CA certificate`);
  const key = importPrivateKeyPem(keyPem);
  if (!cert.checkPrivateKey(key)) {
    throw new PkiError(PkiErrorCode.CA_INVALID, `${keyPath} is not the key of ${certPath}`);
  }
  try {
    return wrap(cert.raw, key);
  } catch (e: unknown) {
    if (!isPkiError(e, PkiErrorCode.DER_INVALID)) throw e;
    throw new PkiError(PkiErrorCode.CA_INVALID, `${certPath}: ${e.message}`, { cause: e });
  }
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

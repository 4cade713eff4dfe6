import { randomBytes } from 'node:crypto';
import { isIP } from 'node:net';
import * as x509 from '@peculiar/x509';
import { PkiError, PkiErrorCode } from './errors.js';
import { fingerprintDer } from './fingerprint.js';
import { pemText, signingAlgorithmFor } from './keys.js';
import { HOST_ID_RE, HOST_URI_PREFIX, ROLE_EKUS, ROLE_URI_PREFIX, WORKER_ROLES, type Role } from './roles.js';

/** Default leaf validity, in days. Workers renew well before this runs out. */
export const DEFAULT_LEAF_VALIDITY_DAYS = 90;
/**
 * How far notBefore is backdated, in ms: a host whose clock is up to this far behind the
 * issuer's still accepts the certificate (and the CA). A day, so that a worker a few minutes
 * or an hour off never fails with "certificate is not yet valid"; pins, not validity windows,
 * decide who is trusted, so an earlier notBefore gives nothing away.
 */
export const NOT_BEFORE_SKEW_MS = 24 * 60 * 60 * 1000;

/** The signing half of a CA, as leaf issuance needs it. */
export interface Issuer {
  readonly cert: x509.X509Certificate;
  readonly key: CryptoKey;
}

export interface LeafProfile {
  readonly role: Role;
  /** Required for worker roles (agent, updater); refused for the others. */
  readonly hostId?: string;
  readonly commonName: string;
  readonly dnsNames?: readonly string[];
  readonly ipAddresses?: readonly string[];
  readonly validityDays?: number;
  /** Overrides the validity window; used to mint expired certificates in tests. */
  readonly notBefore?: Date;
  readonly notAfter?: Date;
}

export interface IssuedCertificate {
  readonly certPem: string;
  readonly fingerprint: string;
  readonly notAfter: Date;
}

/** A random positive 128-bit serial, as hex. */
export function randomSerial(): string {
  const bytes = randomBytes(16);
  bytes[0] = (bytes[0] ?? 0) & 0x7f;
  if (bytes[0] === 0) bytes[0] = 1;
  return bytes.toString('hex');
}

function validateProfile(profile: LeafProfile): void {
  const isWorker = WORKER_ROLES.includes(profile.role);
  if (isWorker && (profile.hostId === undefined || !HOST_ID_RE.test(profile.hostId))) {
    throw new PkiError(PkiErrorCode.BAD_PARAMETER, `role ${profile.role} needs a valid host id`);
  }
  if (!isWorker && profile.hostId !== undefined) {
    throw new PkiError(PkiErrorCode.BAD_PARAMETER, `role ${profile.role} carries no host id`);
  }
  for (const ip of profile.ipAddresses ?? []) {
    if (isIP(ip) === 0) throw new PkiError(PkiErrorCode.BAD_PARAMETER, `not an IP address: ${ip}`);
  }
  const days = profile.validityDays ?? DEFAULT_LEAF_VALIDITY_DAYS;
  if (!Number.isInteger(days) || days < 1 || days > 3650) {
    throw new PkiError(PkiErrorCode.BAD_PARAMETER, `validity of ${days} days is out of range (1..3650)`);
  }
}

/** Escapes a value for use inside an RFC 4514 distinguished name. */
export function escapeDnValue(value: string): string {
  return value.replace(/[\\,+"<>;=#]/g, (c) => `\\${c}`);
}

/**
 * Signs a leaf certificate for `publicKey`. The role (and host id) go into SAN URIs; the CN
 * is informational only and never used for authorization.
 */
export async function signLeaf(
  issuer: Issuer,
  publicKey: CryptoKey | x509.PublicKey,
  profile: LeafProfile,
): Promise<IssuedCertificate> {
  validateProfile(profile);
  const now = Date.now();
  const notBefore = profile.notBefore ?? new Date(now - NOT_BEFORE_SKEW_MS);
  const notAfter =
    profile.notAfter ?? new Date(now + (profile.validityDays ?? DEFAULT_LEAF_VALIDITY_DAYS) * 86_400_000);
  const names: x509.JsonGeneralName[] = [{ type: 'url', value: `${ROLE_URI_PREFIX}${profile.role}` }];
  if (profile.hostId !== undefined) names.push({ type: 'url', value: `${HOST_URI_PREFIX}${profile.hostId}` });
  for (const dns of profile.dnsNames ?? []) names.push({ type: 'dns', value: dns });
  for (const ip of profile.ipAddresses ?? []) names.push({ type: 'ip', value: ip });

  const ekus = ROLE_EKUS[profile.role];
  const keyUsage =
    publicKey.algorithm.name === 'ECDSA'
      ? x509.KeyUsageFlags.digitalSignature | x509.KeyUsageFlags.keyAgreement
      : x509.KeyUsageFlags.digitalSignature | x509.KeyUsageFlags.keyEncipherment;
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: randomSerial(),
    subject: `CN=${escapeDnValue(profile.commonName)}, O=Corral`,
    issuer: issuer.cert.subject,
    notBefore,
    notAfter,
    publicKey,
    signingKey: issuer.key,
    signingAlgorithm: signingAlgorithmFor(issuer.key),
    extensions: [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(keyUsage, true),
      new x509.ExtendedKeyUsageExtension([...ekus], false),
      new x509.SubjectAlternativeNameExtension(names, false),
      await x509.SubjectKeyIdentifierExtension.create(publicKey),
      await x509.AuthorityKeyIdentifierExtension.create(issuer.cert.publicKey),
    ],
  });
  return {
    certPem: pemText(cert.toString('pem')),
    fingerprint: fingerprintDer(new Uint8Array(cert.rawData)),
    // As encoded (whole seconds), so a pin expires exactly when its certificate does.
    notAfter: cert.notAfter,
  };
}

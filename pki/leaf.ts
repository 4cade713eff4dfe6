import { randomBytes, type KeyObject } from 'node:crypto';
import { isIP } from 'node:net';
import {
  basicConstraintsValue,
  extension,
  KEY_USAGE,
  keyIdentifier,
  OID,
  relativeDistinguishedName,
  signCertificate,
  subjectAltNameValue,
  tbsCertificate,
  type GeneralName,
} from './certificate-builder.js';
import { implicitPrimitive, namedBits, octetString, oid, sequence } from './der.js';
import { PkiError, PkiErrorCode } from './errors.js';
import { fingerprintDer } from './fingerprint.js';
import { pemEncode } from './pem.js';
import { signatureAlgorithmFor, type SignatureAlgorithm } from './signature.js';
import {
  HOST_ID_RE,
  HOST_URI_PREFIX,
  ROLE_EKUS,
  ROLE_URI_PREFIX,
  ROLES,
  WORKER_ROLES,
  type Role,
} from './roles.js';

/** Default leaf validity, in days. Workers renew well before this runs out. */
export const DEFAULT_LEAF_VALIDITY_DAYS = 90;
/**
 * How far notBefore is backdated, in ms: a host whose clock is up to this far behind the
 * issuer's still accepts the certificate (and the CA). A day, so that a worker a few minutes
 * or an hour off never fails with "certificate is not yet valid"; pins, not validity windows,
 * decide who is trusted, so an earlier notBefore gives nothing away.
 */
export const NOT_BEFORE_SKEW_MS = 24 * 60 * 60 * 1000;
/** The organization every Corral subject names. */
export const SUBJECT_ORGANIZATION = 'Corral';

/** The signing half of a CA, as leaf issuance needs it. */
export interface Issuer {
  /** The CA's Name, DER, exactly as its certificate's subject holds it. */
  readonly subjectDer: Buffer;
  /** SHA-1 of the CA's subjectPublicKey: the authority key identifier of what it signs. */
  readonly keyIdentifier: Buffer;
  readonly key: KeyObject;
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

/** The subject's public key: as a key object, and its SPKI exactly as it goes into the certificate. */
export interface SubjectKey {
  readonly key: KeyObject;
  readonly spki: Uint8Array;
}

export const subjectKeyOf = (key: KeyObject): SubjectKey => ({
  key,
  spki: key.export({ format: 'der', type: 'spki' }),
});

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

/** Serial bytes from hex: 1 to 20 octets, first one 0x01..0x7f (positive, minimal). */
export function serialBytes(hex: string): Buffer {
  const bytes = /^(?:[0-9a-f]{2}){1,20}$/i.test(hex) ? Buffer.from(hex, 'hex') : Buffer.alloc(0);
  const first = bytes[0] ?? 0;
  if (first === 0 || first > 0x7f) {
    throw new PkiError(PkiErrorCode.BAD_PARAMETER, `serial ${hex} is not 1..20 bytes, positive and minimal`);
  }
  return bytes;
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

/** A time as a certificate holds it: whole seconds. */
export const wholeSeconds = (date: Date): Date => new Date(Math.floor(date.getTime() / 1000) * 1000);

/** The extensions every leaf of a role shares, encoded once. */
const BASIC_CONSTRAINTS_LEAF = extension(OID.basicConstraints, true, basicConstraintsValue(false));
const KEY_USAGE_EC = extension(
  OID.keyUsage,
  true,
  namedBits([KEY_USAGE.digitalSignature, KEY_USAGE.keyAgreement]),
);
const KEY_USAGE_RSA = extension(
  OID.keyUsage,
  true,
  namedBits([KEY_USAGE.digitalSignature, KEY_USAGE.keyEncipherment]),
);
const EXT_KEY_USAGE = new Map<Role, Buffer>(
  ROLES.map((role) => [role, extension(OID.extKeyUsage, false, sequence(...ROLE_EKUS[role].map(oid)))]),
);
/** The subject's second RDN, the same in every leaf. */
const ORGANIZATION_RDN = relativeDistinguishedName(OID.organizationName, SUBJECT_ORGANIZATION);

/** What every leaf an issuer signs shares: its signature algorithm and authority key identifier. */
interface IssuerParts {
  readonly alg: SignatureAlgorithm;
  readonly authorityKeyIdentifier: Buffer;
}

/** Per issuer (a CA object lives as long as its controller), made at its first leaf. */
const issuerParts = new WeakMap<Issuer, IssuerParts>();

function partsOf(issuer: Issuer): IssuerParts {
  let parts = issuerParts.get(issuer);
  if (!parts) {
    parts = {
      alg: signatureAlgorithmFor(issuer.key),
      authorityKeyIdentifier: extension(
        OID.authorityKeyIdentifier,
        false,
        sequence(implicitPrimitive(0, issuer.keyIdentifier)),
      ),
    };
    issuerParts.set(issuer, parts);
  }
  return parts;
}

/** `CN=<commonName>, O=Corral`: one RDN each, in that order. */
const leafSubject = (commonName: string): Buffer =>
  sequence(relativeDistinguishedName(OID.commonName, commonName), ORGANIZATION_RDN);

/**
 * Signs a leaf of Corral's fixed profile for the subject's public key: subject
 * `CN=<commonName>, O=Corral`; basicConstraints CA:false and keyUsage (digitalSignature plus
 * keyAgreement for EC, keyEncipherment for RSA), both critical; the role's extended key
 * usages; SAN URIs for role and host id, then DNS names, then IP addresses; subject and
 * authority key identifiers. The role (and host id) go into SAN URIs; the CN is
 * informational only and never used for authorization. The parts every leaf shares are
 * encoded once (per issuer for its algorithm and key identifier); one signature per leaf.
 */
export async function signLeaf(
  issuer: Issuer,
  subject: SubjectKey,
  profile: LeafProfile,
): Promise<IssuedCertificate> {
  validateProfile(profile);
  const now = Date.now();
  const notBefore = wholeSeconds(profile.notBefore ?? new Date(now - NOT_BEFORE_SKEW_MS));
  const notAfter = wholeSeconds(
    profile.notAfter ?? new Date(now + (profile.validityDays ?? DEFAULT_LEAF_VALIDITY_DAYS) * 86_400_000),
  );
  const names: GeneralName[] = [{ type: 'uri', value: `${ROLE_URI_PREFIX}${profile.role}` }];
  if (profile.hostId !== undefined) names.push({ type: 'uri', value: `${HOST_URI_PREFIX}${profile.hostId}` });
  for (const dns of profile.dnsNames ?? []) names.push({ type: 'dns', value: dns });
  for (const ip of profile.ipAddresses ?? []) names.push({ type: 'ip', value: ip });

  const { alg, authorityKeyIdentifier } = partsOf(issuer);
  const tbs = tbsCertificate({
    serial: serialBytes(randomSerial()),
    signature: alg,
    issuer: issuer.subjectDer,
    notBefore,
    notAfter,
    subject: leafSubject(profile.commonName),
    spki: subject.spki,
    extensions: [
      BASIC_CONSTRAINTS_LEAF,
      subject.key.asymmetricKeyType === 'ec' ? KEY_USAGE_EC : KEY_USAGE_RSA,
      EXT_KEY_USAGE.get(profile.role) as Buffer,
      extension(OID.subjectAltName, false, subjectAltNameValue(names)),
      extension(OID.subjectKeyIdentifier, false, octetString(keyIdentifier(subject.spki))),
      authorityKeyIdentifier,
    ],
  });
  const der = await signCertificate(tbs, alg, issuer.key);
  return { certPem: pemEncode(der, 'CERTIFICATE'), fingerprint: fingerprintDer(der), notAfter };
}

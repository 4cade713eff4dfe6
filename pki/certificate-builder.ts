import { createHash, type KeyObject } from 'node:crypto';
import { isIP } from 'node:net';
import {
  bitString,
  boolean,
  ia5String,
  implicitPrimitive,
  isPrintable,
  octetString,
  oid,
  printableString,
  sequence,
  setOf,
  explicit,
  smallInteger,
  time,
  unsignedInteger,
  utf8String,
} from './der.js';
import { bitStringBytes, childrenOf, expectTag, readDer } from './der-reader.js';
import { PkiError, PkiErrorCode } from './errors.js';
import { signData, type SignatureAlgorithm } from './signature.js';

/**
 * X.509 v3 certificates from fixed templates: the TBSCertificate is written field by field
 * with the DER writer and signed with node:crypto, so issuing costs one native signature.
 */

export const OID = {
  commonName: '2.5.4.3',
  organizationName: '2.5.4.10',
  basicConstraints: '2.5.29.19',
  keyUsage: '2.5.29.15',
  extKeyUsage: '2.5.29.37',
  subjectAltName: '2.5.29.17',
  subjectKeyIdentifier: '2.5.29.14',
  authorityKeyIdentifier: '2.5.29.35',
  extensionRequest: '1.2.840.113549.1.9.14',
} as const;

/** KeyUsage bit numbers (RFC 5280 4.2.1.3). */
export const KEY_USAGE = {
  digitalSignature: 0,
  keyEncipherment: 2,
  keyAgreement: 4,
  keyCertSign: 5,
  cRLSign: 6,
} as const;

/** One RDN of one attribute: PrintableString where the value fits its alphabet, UTF8String otherwise. */
export function relativeDistinguishedName(type: string, value: string): Buffer {
  return setOf(sequence(oid(type), isPrintable(value) ? printableString(value) : utf8String(value)));
}

/** A Name: one RDN per attribute, in the order given. */
export function distinguishedName(attributes: readonly (readonly [oid: string, value: string])[]): Buffer {
  return sequence(...attributes.map(([type, value]) => relativeDistinguishedName(type, value)));
}

/** One Extension; `value` is the DER the extnValue OCTET STRING wraps. */
export function extension(type: string, critical: boolean, value: Uint8Array): Buffer {
  return critical
    ? sequence(oid(type), boolean(true), octetString(value))
    : sequence(oid(type), octetString(value));
}

export const basicConstraintsValue = (ca: boolean): Buffer =>
  ca ? sequence(boolean(true), smallInteger(0)) : sequence();

/** The 16 bytes of an IPv6 address in text form (a zone id is not part of the address). */
function ipv6Bytes(text: string): Buffer {
  const bare = text.replace(/%.*$/, '');
  const groups: number[] = [];
  const parse = (part: string): number[] => {
    if (part === '') return [];
    const words = part.split(':');
    const out: number[] = [];
    for (const [i, w] of words.entries()) {
      if (i === words.length - 1 && w.includes('.')) {
        const v4 = w.split('.').map(Number);
        out.push(((v4[0] ?? 0) << 8) | (v4[1] ?? 0), ((v4[2] ?? 0) << 8) | (v4[3] ?? 0));
      } else {
        out.push(parseInt(w, 16));
      }
    }
    return out;
  };
  const halves = bare.split('::');
  if (halves.length === 2) {
    const left = parse(halves[0] ?? '');
    const right = parse(halves[1] ?? '');
    groups.push(...left, ...new Array<number>(8 - left.length - right.length).fill(0), ...right);
  } else {
    groups.push(...parse(bare));
  }
  if (groups.length !== 8 || groups.some((g) => !Number.isInteger(g) || g < 0 || g > 0xffff)) {
    throw new PkiError(PkiErrorCode.BAD_PARAMETER, `not an IP address: ${text}`);
  }
  const bytes = Buffer.alloc(16);
  groups.forEach((g, i) => bytes.writeUInt16BE(g, i * 2));
  return bytes;
}

/** An iPAddress GeneralName's octets: 4 for IPv4, 16 for IPv6. */
export function ipAddressBytes(text: string): Buffer {
  const family = isIP(text);
  if (family === 4) return Buffer.from(text.split('.').map(Number));
  if (family === 6) return ipv6Bytes(text);
  throw new PkiError(PkiErrorCode.BAD_PARAMETER, `not an IP address: ${text}`);
}

export type GeneralName =
  | { readonly type: 'uri'; readonly value: string }
  | { readonly type: 'dns'; readonly value: string }
  | { readonly type: 'ip'; readonly value: string };

export function subjectAltNameValue(names: readonly GeneralName[]): Buffer {
  return sequence(
    ...names.map((n) => {
      switch (n.type) {
        case 'uri':
          return ia5String(n.value, 0x86);
        case 'dns':
          return ia5String(n.value, 0x82);
        case 'ip':
          return implicitPrimitive(7, ipAddressBytes(n.value));
      }
    }),
  );
}

/**
 * The key identifier of a public key (SPKI DER): SHA-1 of its subjectPublicKey bits, RFC 5280
 * 4.2.1.2 method (1).
 */
export function keyIdentifier(spki: Uint8Array): Buffer {
  const [, bits] = childrenOf(expectTag(readDer(spki), 0x30, 'SubjectPublicKeyInfo'));
  return createHash('sha1')
    .update(bitStringBytes(expectTag(bits, 0x03, 'subjectPublicKey')))
    .digest();
}

export interface TbsFields {
  /** Positive serial number, big-endian magnitude. */
  readonly serial: Uint8Array;
  readonly signature: SignatureAlgorithm;
  /** The issuer's Name, DER, exactly as its certificate's subject holds it. */
  readonly issuer: Uint8Array;
  readonly notBefore: Date;
  readonly notAfter: Date;
  readonly subject: Uint8Array;
  readonly spki: Uint8Array;
  /** Complete Extension encodings, in order. */
  readonly extensions: readonly Uint8Array[];
}

/** A v3 TBSCertificate. */
export function tbsCertificate(f: TbsFields): Buffer {
  return sequence(
    explicit(0, smallInteger(2)),
    unsignedInteger(f.serial),
    f.signature.identifier,
    f.issuer,
    sequence(time(f.notBefore), time(f.notAfter)),
    f.subject,
    f.spki,
    explicit(3, sequence(...f.extensions)),
  );
}

/** Signs a TBSCertificate natively (see signData) into a complete Certificate, DER. */
export async function signCertificate(tbs: Buffer, alg: SignatureAlgorithm, key: KeyObject): Promise<Buffer> {
  const signature = await signData(alg, tbs, key);
  return sequence(tbs, alg.identifier, bitString(signature));
}

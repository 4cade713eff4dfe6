import { PkiError, PkiErrorCode } from './errors.js';

/**
 * A small DER writer: just the universal types Corral's certificates and requests are made
 * of. Every function returns the complete encoding (tag, definite length, contents).
 */

export const TAG = {
  BOOLEAN: 0x01,
  INTEGER: 0x02,
  BIT_STRING: 0x03,
  OCTET_STRING: 0x04,
  NULL: 0x05,
  OID: 0x06,
  UTF8_STRING: 0x0c,
  PRINTABLE_STRING: 0x13,
  IA5_STRING: 0x16,
  UTC_TIME: 0x17,
  GENERALIZED_TIME: 0x18,
  SEQUENCE: 0x30,
  SET: 0x31,
} as const;

function lengthBytes(length: number): Buffer {
  if (length < 0x80) return Buffer.from([length]);
  const bytes: number[] = [];
  for (let n = length; n > 0; n = Math.floor(n / 256)) bytes.unshift(n % 256);
  return Buffer.from([0x80 | bytes.length, ...bytes]);
}

/** One TLV with the given tag byte (low-tag-number form only). */
export function tlv(tag: number, contents: Uint8Array): Buffer {
  return Buffer.concat([Buffer.from([tag]), lengthBytes(contents.length), contents]);
}

export const sequence = (...items: readonly Uint8Array[]): Buffer => tlv(TAG.SEQUENCE, Buffer.concat(items));

/** A SET OF: DER orders the encoded elements (X.690 11.6). */
export const setOf = (...items: readonly Uint8Array[]): Buffer =>
  tlv(TAG.SET, Buffer.concat([...items].sort((a, b) => Buffer.compare(a, b))));

/** `[n]` EXPLICIT: a constructed context-specific tag around one complete encoding. */
export const explicit = (n: number, inner: Uint8Array): Buffer => tlv(0xa0 | n, inner);

/** `[n]` IMPLICIT over a primitive type: the contents with a context-specific tag. */
export const implicitPrimitive = (n: number, contents: Uint8Array): Buffer => tlv(0x80 | n, contents);

/** `[n]` IMPLICIT over a constructed type (SET OF, SEQUENCE): contents already encoded. */
export const implicitConstructed = (n: number, contents: Uint8Array): Buffer => tlv(0xa0 | n, contents);

export const boolean = (value: boolean): Buffer => tlv(TAG.BOOLEAN, Buffer.from([value ? 0xff : 0x00]));

export const nullValue = (): Buffer => tlv(TAG.NULL, Buffer.alloc(0));

export const octetString = (bytes: Uint8Array): Buffer => tlv(TAG.OCTET_STRING, bytes);

/** A BIT STRING: `bytes`, whose last `unusedBits` bits (0..7) are not part of the value. */
export function bitString(bytes: Uint8Array, unusedBits = 0): Buffer {
  return tlv(TAG.BIT_STRING, Buffer.concat([Buffer.from([unusedBits]), bytes]));
}

/**
 * A named-bit BIT STRING (KeyUsage) from bit numbers, bit 0 first: trailing zero bits dropped,
 * as DER requires for named bit lists (X.690 11.2.2).
 */
export function namedBits(bitNumbers: readonly number[]): Buffer {
  if (bitNumbers.length === 0) return bitString(Buffer.alloc(0));
  const highest = Math.max(...bitNumbers);
  const bytes = Buffer.alloc(Math.floor(highest / 8) + 1);
  for (const bit of bitNumbers) bytes[bit >> 3] = (bytes[bit >> 3] ?? 0) | (0x80 >> (bit & 7));
  return bitString(bytes, 7 - (highest & 7));
}

/** An INTEGER from an unsigned big-endian magnitude: leading zeros dropped, a sign byte added. */
export function unsignedInteger(magnitude: Uint8Array): Buffer {
  let start = 0;
  while (start < magnitude.length - 1 && magnitude[start] === 0) start++;
  const body = Buffer.from(magnitude.subarray(start));
  const padded = body.length === 0 || (body[0] ?? 0) & 0x80 ? Buffer.concat([Buffer.from([0]), body]) : body;
  return tlv(TAG.INTEGER, padded);
}

export function smallInteger(value: number): Buffer {
  if (!Number.isInteger(value) || value < 0 || value > 0xffff) {
    throw new PkiError(PkiErrorCode.BAD_PARAMETER, `integer ${value} out of range`);
  }
  return unsignedInteger(Buffer.from([value >> 8, value & 0xff]));
}

/** An OBJECT IDENTIFIER from its dotted form. */
export function oid(dotted: string): Buffer {
  const arcs = dotted.split('.').map(Number);
  const [first = -1, second = -1, ...rest] = arcs;
  if (arcs.some((a) => !Number.isSafeInteger(a) || a < 0) || first > 2 || (first < 2 && second > 39)) {
    throw new PkiError(PkiErrorCode.BAD_PARAMETER, `not an object identifier: ${dotted}`);
  }
  const out: number[] = [];
  for (const arc of [first * 40 + second, ...rest]) {
    const chunk: number[] = [arc & 0x7f];
    for (let n = Math.floor(arc / 128); n > 0; n = Math.floor(n / 128)) chunk.unshift(0x80 | (n & 0x7f));
    out.push(...chunk);
  }
  return tlv(TAG.OID, Buffer.from(out));
}

export const utf8String = (text: string): Buffer => tlv(TAG.UTF8_STRING, Buffer.from(text, 'utf8'));

/** PrintableString's alphabet (X.680 41.4). */
const PRINTABLE_RE = /^[A-Za-z0-9 '()+,\-./:=?]*$/;

export const isPrintable = (text: string): boolean => PRINTABLE_RE.test(text);

export function printableString(text: string): Buffer {
  if (!isPrintable(text)) throw new PkiError(PkiErrorCode.BAD_PARAMETER, 'not a PrintableString');
  return tlv(TAG.PRINTABLE_STRING, Buffer.from(text, 'latin1'));
}

// eslint-disable-next-line no-control-regex -- IA5 is exactly the 7-bit range
const IA5_RE = /^[\x00-\x7f]*$/;

export function ia5String(text: string, tag: number = TAG.IA5_STRING): Buffer {
  if (!IA5_RE.test(text))
    throw new PkiError(PkiErrorCode.BAD_PARAMETER, `not ASCII: ${JSON.stringify(text)}`);
  return tlv(tag, Buffer.from(text, 'latin1'));
}

const two = (n: number): string => String(n).padStart(2, '0');

/**
 * RFC 5280 Time: UTCTime for 1950 through 2049, GeneralizedTime otherwise, whole seconds in
 * UTC (milliseconds dropped).
 */
export function time(date: Date): Buffer {
  const y = date.getUTCFullYear();
  const rest =
    two(date.getUTCMonth() + 1) +
    two(date.getUTCDate()) +
    two(date.getUTCHours()) +
    two(date.getUTCMinutes()) +
    two(date.getUTCSeconds()) +
    'Z';
  if (y >= 1950 && y <= 2049) return tlv(TAG.UTC_TIME, Buffer.from(two(y % 100) + rest, 'latin1'));
  if (y < 0 || y > 9999) throw new PkiError(PkiErrorCode.BAD_PARAMETER, `year ${y} cannot be encoded`);
  return tlv(TAG.GENERALIZED_TIME, Buffer.from(String(y).padStart(4, '0') + rest, 'latin1'));
}

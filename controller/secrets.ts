import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';

/** A fresh secret token: a prefix naming its kind, then 256 random bits (base64url). */
export function newSecret(prefix: string): string {
  return `${prefix}_${randomBytes(32).toString('base64url')}`;
}

/** SHA-256 hex of a secret: the only form the database keeps. */
export function secretHash(secret: string): string {
  return createHash('sha256').update(secret, 'utf8').digest('hex');
}

/** Compares two hex hashes in constant time (for equal lengths). */
export function hashesEqual(a: string, b: string): boolean {
  const ab = Buffer.from(a, 'hex');
  const bb = Buffer.from(b, 'hex');
  return ab.length === bb.length && ab.length > 0 && timingSafeEqual(ab, bb);
}

/** A short random id for rows that are listed and named (tokens). */
export function newId(prefix: string, bytes = 8): string {
  return `${prefix}-${randomBytes(bytes).toString('hex')}`;
}

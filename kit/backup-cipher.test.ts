import { createHash, randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import { buffer } from 'node:stream/consumers';
import { pipeline } from 'node:stream/promises';
import { describe, expect, it } from 'vitest';
import { ErrorCode } from '../protocol/errors.js';
import {
  BACKUP_HEADER_BYTES,
  createBackupDecryptor,
  createBackupEncryptor,
  parseBackupHeader,
} from './backup-cipher.js';

/** The cheapest cost the framing allows, so each of the many decryptions below is quick. */
const CHEAP = { cost: { log2N: 10, r: 8, p: 1 }, chunkBytes: 1024 };
const PASS = 'correct horse battery staple';

async function encrypt(plain: Buffer, pass = PASS, pieces = 7): Promise<Buffer> {
  const enc = await createBackupEncryptor(pass, CHEAP);
  const parts: Buffer[] = [];
  for (let at = 0; at < plain.length; at += pieces) parts.push(plain.subarray(at, at + pieces));
  const out = buffer(enc);
  await pipeline(Readable.from(parts), enc);
  return out;
}

/** Decrypts in pieces of `piece` bytes; resolves the plaintext or rejects with the error. */
async function decrypt(file: Buffer, pass = PASS, piece = 333): Promise<Buffer> {
  const parts: Buffer[] = [];
  for (let at = 0; at < file.length; at += piece) parts.push(file.subarray(at, at + piece));
  const dec = createBackupDecryptor(pass);
  const out: Buffer[] = [];
  dec.on('data', (b: Buffer) => out.push(b));
  await pipeline(Readable.from(parts), dec);
  return Buffer.concat(out);
}

async function codeOf(p: Promise<unknown>): Promise<string> {
  try {
    await p;
  } catch (e: unknown) {
    return String((e as { code?: unknown }).code);
  }
  return 'accepted';
}

describe('backup framing (scrypt + AES-256-GCM, chunked)', () => {
  it('round-trips empty, one-chunk, exact-boundary and many-chunk plaintexts, however split', async () => {
    for (const size of [0, 1, 1023, 1024, 1025, 4096, 10_000]) {
      const plain = randomBytes(size);
      const file = await encrypt(plain);
      expect(parseBackupHeader(file).chunkBytes).toBe(1024);
      for (const piece of [1, 97, 5000]) expect((await decrypt(file, PASS, piece)).equals(plain)).toBe(true);
    }
  });

  it('never shows the plaintext or the passphrase in the file', async () => {
    const plain = Buffer.from('-----BEGIN PRIVATE KEY-----'.repeat(50));
    const file = await encrypt(plain);
    expect(file.includes(Buffer.from('PRIVATE KEY'))).toBe(false);
    expect(file.includes(Buffer.from(PASS))).toBe(false);
  });

  it('refuses a wrong passphrase with CORRAL_ERR_BACKUP_PASSPHRASE, releasing nothing', async () => {
    const file = await encrypt(randomBytes(3000));
    const dec = createBackupDecryptor('not the passphrase');
    const got: Buffer[] = [];
    dec.on('data', (b: Buffer) => got.push(b));
    expect(await codeOf(pipeline(Readable.from([file]), dec))).toBe(ErrorCode.BACKUP_PASSPHRASE);
    expect(got).toEqual([]);
  });

  it('refuses a flipped bit at every byte of the file with CORRAL_ERR_BACKUP_DAMAGED', async () => {
    const file = await encrypt(randomBytes(2500));
    const codes = new Set<string>();
    for (let i = 0; i < file.length; i++) {
      const bad = Buffer.from(file);
      bad[i] = (bad[i] ?? 0) ^ (1 << (i % 8));
      codes.add(await codeOf(decrypt(bad, PASS, 4096)));
    }
    expect([...codes]).toEqual([ErrorCode.BACKUP_DAMAGED]);
  });

  it('refuses a file cut at any length, or with bytes appended', async () => {
    const file = await encrypt(randomBytes(2500));
    const codes = new Set<string>();
    for (let n = 0; n < file.length; n++) codes.add(await codeOf(decrypt(file.subarray(0, n), PASS, 4096)));
    for (const tail of [Buffer.from([0]), Buffer.alloc(5), randomBytes(100)])
      codes.add(await codeOf(decrypt(Buffer.concat([file, tail]), PASS, 4096)));
    expect([...codes]).toEqual([ErrorCode.BACKUP_DAMAGED]);
  });

  it('refuses chunks reordered, dropped, or taken from another backup made with the same passphrase', async () => {
    const plain = randomBytes(3 * 1024 + 10);
    const a = await encrypt(plain);
    const b = await encrypt(plain);
    const frame = 5 + 1024 + 16;
    const h = BACKUP_HEADER_BYTES;
    const c0 = a.subarray(h, h + frame);
    const c1 = a.subarray(h + frame, h + 2 * frame);
    const rest = a.subarray(h + 2 * frame);
    const swapped = Buffer.concat([a.subarray(0, h), c1, c0, rest]);
    const dropped = Buffer.concat([a.subarray(0, h), c1, rest]);
    const mixed = Buffer.concat([a.subarray(0, h), b.subarray(h)]);
    for (const bad of [swapped, dropped, mixed])
      expect(await codeOf(decrypt(bad))).toBe(ErrorCode.BACKUP_DAMAGED);
  });

  it('refuses a header that names scrypt parameters out of bounds, before deriving anything', async () => {
    const file = await encrypt(randomBytes(10));
    expect(() => parseBackupHeader(Buffer.alloc(BACKUP_HEADER_BYTES))).toThrow(/CORRALBK/);
    for (const [at, value] of [
      [9, 40],
      [10, 200],
      [11, 0],
    ] as const) {
      const bad = Buffer.from(file);
      bad[at] = value;
      // A forger can recompute the unkeyed digest: the bounds still hold.
      createHash('sha256').update(bad.subarray(0, 64)).digest().copy(bad, 64);
      expect(() => parseBackupHeader(bad)).toThrow(/out of bounds/);
      expect(await codeOf(decrypt(bad))).toBe(ErrorCode.BACKUP_DAMAGED);
    }
  });
});

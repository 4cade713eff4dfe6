import {
  createCipheriv,
  createDecipheriv,
  createHash,
  createHmac,
  randomBytes,
  scrypt,
  timingSafeEqual,
} from 'node:crypto';
import { Transform, type TransformCallback } from 'node:stream';
import { CorralError, ErrorCode } from '../protocol/errors.js';

/**
 * The encrypted framing of a controller backup. A file is a header, then chunks:
 *
 *   header (96 bytes): magic `CORRALBK` | version u8 (1) | scrypt log2 N u8 | r u8 | p u8 |
 *                      chunk bytes u32 | salt (16) | key check (32) | digest (32)
 *   chunk:             flags u8 (1 on the last chunk) | length u32 | ciphertext | GCM tag (16)
 *
 * scrypt(passphrase, salt) gives 64 bytes: an AES-256-GCM key and a key-check key. The key
 * check is HMAC-SHA256 over the header's first 32 bytes; the digest is SHA-256 over the 64
 * before it, so a damaged header is told apart from a wrong passphrase. Each chunk's nonce is
 * its index (the key is unique to the file: its salt is random); its additional data is the
 * whole header, its index and its flags, so chunks cannot be reordered, dropped, moved between
 * files or cut off (the last must carry the flag and nothing may follow it). Decryption
 * releases a chunk's plaintext only once its tag has been checked.
 */
export const BACKUP_MAGIC = Buffer.from('CORRALBK', 'latin1');
export const BACKUP_FORMAT_VERSION = 1;
export const BACKUP_HEADER_BYTES = 96;
const CHECKED_BYTES = 32;
const DIGESTED_BYTES = 64;
const SALT_BYTES = 16;
const TAG_BYTES = 16;
const FRAME_PREFIX_BYTES = 5;
const FLAG_LAST = 1;

export interface ScryptCost {
  /** log2 of scrypt's N. */
  readonly log2N: number;
  readonly r: number;
  readonly p: number;
}

/** About 32 MiB and a tenth of a second per derivation on a server core. */
export const DEFAULT_SCRYPT_COST: ScryptCost = { log2N: 15, r: 8, p: 1 };
/** Bounds a header may name: a file cannot make restore spend unbounded memory or time. */
const MIN_LOG2N = 10;
const MAX_LOG2N = 20;
const MAX_R = 16;
const MAX_P = 4;
export const DEFAULT_BACKUP_CHUNK_BYTES = 64 * 1024;
const MIN_CHUNK_BYTES = 1024;
const MAX_CHUNK_BYTES = 4 * 1024 * 1024;

const damaged = (why: string): CorralError =>
  new CorralError(ErrorCode.BACKUP_DAMAGED, `the backup is damaged or not a Corral backup: ${why}`);

function deriveKeys(
  passphrase: string,
  salt: Buffer,
  cost: ScryptCost,
): Promise<{ encKey: Buffer; checkKey: Buffer }> {
  const N = 2 ** cost.log2N;
  return new Promise((resolve, reject) => {
    scrypt(
      Buffer.from(passphrase, 'utf8'),
      salt,
      64,
      { N, r: cost.r, p: cost.p, maxmem: 256 * N * cost.r + 1024 * 1024 },
      (err, key) =>
        err ? reject(err) : resolve({ encKey: key.subarray(0, 32), checkKey: key.subarray(32) }),
    );
  });
}

function nonce(index: bigint): Buffer {
  const n = Buffer.alloc(12);
  n.writeBigUInt64BE(index, 4);
  return n;
}

function aad(header: Buffer, index: bigint, flags: number): Buffer {
  const tail = Buffer.alloc(9);
  tail.writeBigUInt64BE(index, 0);
  tail.writeUInt8(flags, 8);
  return Buffer.concat([header, tail]);
}

function checkCost(cost: ScryptCost, chunkBytes: number): void {
  const ok =
    cost.log2N >= MIN_LOG2N &&
    cost.log2N <= MAX_LOG2N &&
    cost.r >= 1 &&
    cost.r <= MAX_R &&
    cost.p >= 1 &&
    cost.p <= MAX_P &&
    chunkBytes >= MIN_CHUNK_BYTES &&
    chunkBytes <= MAX_CHUNK_BYTES;
  if (!ok) throw damaged('its header names parameters out of bounds');
}

export interface EncryptOptions {
  readonly cost?: ScryptCost;
  readonly chunkBytes?: number;
}

/**
 * A Transform that encrypts what is written to it into the framing above. Derives the key
 * first (scrypt), so it is async; the passphrase is not kept.
 */
export async function createBackupEncryptor(passphrase: string, o: EncryptOptions = {}): Promise<Transform> {
  const cost = o.cost ?? DEFAULT_SCRYPT_COST;
  const chunkBytes = o.chunkBytes ?? DEFAULT_BACKUP_CHUNK_BYTES;
  if (
    cost.log2N < MIN_LOG2N ||
    cost.log2N > MAX_LOG2N ||
    chunkBytes < MIN_CHUNK_BYTES ||
    chunkBytes > MAX_CHUNK_BYTES
  )
    throw new CorralError(ErrorCode.VALIDATION, 'backup encryption parameters out of bounds');
  const salt = randomBytes(SALT_BYTES);
  const { encKey, checkKey } = await deriveKeys(passphrase, salt, cost);
  const header = Buffer.alloc(BACKUP_HEADER_BYTES);
  BACKUP_MAGIC.copy(header, 0);
  header.writeUInt8(BACKUP_FORMAT_VERSION, 8);
  header.writeUInt8(cost.log2N, 9);
  header.writeUInt8(cost.r, 10);
  header.writeUInt8(cost.p, 11);
  header.writeUInt32BE(chunkBytes, 12);
  salt.copy(header, 16);
  createHmac('sha256', checkKey)
    .update(header.subarray(0, CHECKED_BYTES))
    .digest()
    .copy(header, CHECKED_BYTES);
  createHash('sha256').update(header.subarray(0, DIGESTED_BYTES)).digest().copy(header, DIGESTED_BYTES);

  let index = 0n;
  let pending: Buffer[] = [];
  let pendingBytes = 0;
  const frame = (plain: Buffer, flags: number): Buffer => {
    const cipher = createCipheriv('aes-256-gcm', encKey, nonce(index), { authTagLength: TAG_BYTES });
    cipher.setAAD(aad(header, index, flags));
    const body = Buffer.concat([cipher.update(plain), cipher.final()]);
    index += 1n;
    const prefix = Buffer.alloc(FRAME_PREFIX_BYTES);
    prefix.writeUInt8(flags, 0);
    prefix.writeUInt32BE(plain.length, 1);
    return Buffer.concat([prefix, body, cipher.getAuthTag()]);
  };
  let headerSent = false;
  const sendHeader = (t: Transform): void => {
    if (!headerSent) t.push(header);
    headerSent = true;
  };
  return new Transform({
    transform(chunk: Buffer, _enc, done: TransformCallback) {
      sendHeader(this);
      pending.push(chunk);
      pendingBytes += chunk.length;
      // Keep at least one byte back: the last chunk (flagged) is sent by flush.
      while (pendingBytes > chunkBytes) {
        const all = Buffer.concat(pending);
        this.push(frame(all.subarray(0, chunkBytes), 0));
        pending = [all.subarray(chunkBytes)];
        pendingBytes = all.length - chunkBytes;
      }
      done();
    },
    flush(done: TransformCallback) {
      sendHeader(this);
      this.push(frame(Buffer.concat(pending), FLAG_LAST));
      pending = [];
      done();
    },
  });
}

/** What the header of a backup says (readable without the passphrase). */
export interface BackupHeader {
  readonly version: number;
  readonly cost: ScryptCost;
  readonly chunkBytes: number;
}

/**
 * Checks a header's magic, digest and bounds. Throws CORRAL_ERR_BACKUP_DAMAGED.
 */
export function parseBackupHeader(header: Buffer): BackupHeader {
  if (header.length < BACKUP_HEADER_BYTES) throw damaged('it is shorter than its header');
  if (!header.subarray(0, BACKUP_MAGIC.length).equals(BACKUP_MAGIC))
    throw damaged('it does not start with CORRALBK');
  const digest = createHash('sha256').update(header.subarray(0, DIGESTED_BYTES)).digest();
  if (!timingSafeEqual(digest, header.subarray(DIGESTED_BYTES, BACKUP_HEADER_BYTES)))
    throw damaged('its header fails its digest');
  const version = header.readUInt8(8);
  if (version !== BACKUP_FORMAT_VERSION)
    throw damaged(`format version ${version} is not one this build reads`);
  const cost = { log2N: header.readUInt8(9), r: header.readUInt8(10), p: header.readUInt8(11) };
  const chunkBytes = header.readUInt32BE(12);
  checkCost(cost, chunkBytes);
  return { version, cost, chunkBytes };
}

/**
 * A Transform that takes a backup file's bytes and gives its plaintext, each chunk only
 * after its tag was checked. Errors (on the stream): CORRAL_ERR_BACKUP_PASSPHRASE when the
 * passphrase does not open it, CORRAL_ERR_BACKUP_DAMAGED for anything flipped, cut short,
 * reordered or appended.
 */
export function createBackupDecryptor(passphrase: string): Transform {
  let buffered: Buffer = Buffer.alloc(0);
  let header: Buffer | undefined;
  let info: BackupHeader | undefined;
  let encKey: Buffer | undefined;
  let index = 0n;
  let ended = false;

  const chunks = (t: Transform): void => {
    if (!header || !info || !encKey) return;
    while (buffered.length >= FRAME_PREFIX_BYTES) {
      if (ended) throw damaged('bytes follow its last chunk');
      const flags = buffered.readUInt8(0);
      const length = buffered.readUInt32BE(1);
      if ((flags & ~FLAG_LAST) !== 0 || length > info.chunkBytes)
        throw damaged(`chunk ${index} has a bad frame`);
      const total = FRAME_PREFIX_BYTES + length + TAG_BYTES;
      if (buffered.length < total) return;
      const decipher = createDecipheriv('aes-256-gcm', encKey, nonce(index), { authTagLength: TAG_BYTES });
      decipher.setAAD(aad(header, index, flags));
      decipher.setAuthTag(buffered.subarray(FRAME_PREFIX_BYTES + length, total));
      let plain: Buffer;
      try {
        plain = Buffer.concat([
          decipher.update(buffered.subarray(FRAME_PREFIX_BYTES, FRAME_PREFIX_BYTES + length)),
          decipher.final(),
        ]);
      } catch (e: unknown) {
        void e; // Unsupported state or unable to authenticate data: the chunk was changed.
        throw damaged(`chunk ${index} fails its authentication`);
      }
      buffered = buffered.subarray(total);
      index += 1n;
      if ((flags & FLAG_LAST) !== 0) ended = true;
      if (plain.length > 0) t.push(plain);
    }
  };

  return new Transform({
    transform(chunk: Buffer, _enc, done: TransformCallback) {
      buffered = buffered.length === 0 ? chunk : Buffer.concat([buffered, chunk]);
      if (header) {
        try {
          chunks(this);
          done();
        } catch (e: unknown) {
          done(e as Error);
        }
        return;
      }
      if (buffered.length < BACKUP_HEADER_BYTES) return done();
      const h = Buffer.from(buffered.subarray(0, BACKUP_HEADER_BYTES));
      buffered = buffered.subarray(BACKUP_HEADER_BYTES);
      let parsed: BackupHeader;
      try {
        parsed = parseBackupHeader(h);
      } catch (e: unknown) {
        return done(e as Error);
      }
      deriveKeys(passphrase, h.subarray(16, 16 + SALT_BYTES), parsed.cost).then(
        ({ encKey: k, checkKey }) => {
          const check = createHmac('sha256', checkKey).update(h.subarray(0, CHECKED_BYTES)).digest();
          if (!timingSafeEqual(check, h.subarray(CHECKED_BYTES, DIGESTED_BYTES))) {
            done(new CorralError(ErrorCode.BACKUP_PASSPHRASE, 'the passphrase does not open this backup'));
            return;
          }
          header = h;
          info = parsed;
          encKey = k;
          try {
            chunks(this);
            done();
          } catch (e: unknown) {
            done(e as Error);
          }
        },
        (e: unknown) => done(e as Error),
      );
    },
    flush(done: TransformCallback) {
      if (!header) return done(damaged('it is shorter than its header'));
      if (!ended) return done(damaged('it is cut short (its last chunk is missing)'));
      if (buffered.length > 0) return done(damaged('bytes follow its last chunk'));
      done();
    },
  });
}

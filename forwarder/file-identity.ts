import { createHash } from 'node:crypto';
import { open, type FileHandle } from 'node:fs/promises';
import { STREAM_KEY_DOMAIN } from '../protocol/syslog-corral.js';

/** Bytes of a file's head that identify it, together with its inode. */
export const HEAD_BYTES = 1024;

/** Which file a generation is: the inode it was found at and a hash of its first line. */
export interface FileIdentity {
  readonly dev: string;
  readonly ino: string;
  readonly headHash: string;
}

/**
 * SHA-256 of the file's first line (through its LF), or of its first HEAD_BYTES when that line
 * is longer. Undefined while the file is too young to tell (no complete first line): nothing
 * of it could be shipped yet anyway. The hash survives inode reuse and tells a file truncated
 * and rewritten in place (copytruncate) from the one that was there before.
 */
export async function headHash(fh: FileHandle): Promise<string | undefined> {
  const buf = Buffer.allocUnsafe(HEAD_BYTES);
  const { bytesRead } = await fh.read(buf, 0, HEAD_BYTES, 0);
  const lf = buf.subarray(0, bytesRead).indexOf(0x0a);
  if (lf === -1 && bytesRead < HEAD_BYTES) return undefined;
  const end = lf === -1 ? HEAD_BYTES : lf + 1;
  return createHash('sha256').update(buf.subarray(0, end)).digest('hex');
}

/** The identity of an open file, or undefined when its head is not complete yet. */
export async function identify(fh: FileHandle): Promise<FileIdentity | undefined> {
  const st = await fh.stat({ bigint: true });
  const hash = await headHash(fh);
  if (hash === undefined) return undefined;
  return { dev: st.dev.toString(), ino: st.ino.toString(), headHash: hash };
}

export function sameInode(a: { dev: string; ino: string }, b: { dev: string; ino: string }): boolean {
  return a.dev === b.dev && a.ino === b.ino;
}

/** Opens a file for reading; undefined when it does not exist (between rename and create). */
export async function openIfExists(path: string): Promise<FileHandle | undefined> {
  try {
    return await open(path, 'r');
  } catch (e: unknown) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw e;
  }
}

/** A generation's content key (protocol/syslog-corral.ts): what the listener can find it by. */
export function streamKey(path: string, headHash: string): string {
  return createHash('sha256').update(`${STREAM_KEY_DOMAIN}\0${path}\0${headHash}`).digest('hex').slice(0, 32);
}

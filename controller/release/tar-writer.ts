import { createReadStream } from 'node:fs';
import { Header, Pax } from 'tar';
import { CorralError, ErrorCode } from '../../protocol/errors.js';

/** Every entry's modification time: fixed, so the same input gives the same bytes. */
export const FIXED_MTIME = new Date('2000-01-01T00:00:00.000Z');
const BLOCK_BYTES = 512;

export type TarEntry =
  | { readonly type: 'Directory'; readonly path: string }
  | {
      readonly type: 'File';
      readonly path: string;
      readonly executable: boolean;
      readonly size: number;
      /** Where the content is read from, or the content itself. */
      readonly source: string | Buffer;
    }
  | { readonly type: 'SymbolicLink'; readonly path: string; readonly linkpath: string };

function header(entry: TarEntry): Buffer {
  const isDir = entry.type === 'Directory';
  const data = {
    path: isDir ? `${entry.path}/` : entry.path,
    mode: entry.type === 'File' ? (entry.executable ? 0o755 : 0o644) : isDir ? 0o755 : 0o777,
    uid: 0,
    gid: 0,
    size: entry.type === 'File' ? entry.size : 0,
    mtime: FIXED_MTIME,
    type: entry.type,
    linkpath: entry.type === 'SymbolicLink' ? entry.linkpath : '',
    uname: '',
    gname: '',
  } as const;
  const block = Buffer.alloc(BLOCK_BYTES);
  const h = new Header(data);
  const needPax = h.encode(block);
  if (!needPax) return block;
  // Long (or non-ASCII) names travel in a PAX header whose values are themselves fixed.
  const pax = new Pax({
    path: data.path,
    ...(data.linkpath ? { linkpath: data.linkpath } : {}),
    mtime: FIXED_MTIME,
  });
  return Buffer.concat([pax.encode(), block]);
}

/**
 * Yields the bytes of an uncompressed tar (ustar + PAX for long names) holding `entries` in the
 * given order, with owners 0/0, no user or group names, fixed times and normalized modes.
 * Throws when a file's size changed since it was listed.
 */
export async function* tarBytes(entries: readonly TarEntry[]): AsyncGenerator<Buffer> {
  for (const entry of entries) {
    yield header(entry);
    if (entry.type !== 'File') continue;
    let written = 0;
    if (Buffer.isBuffer(entry.source)) {
      written = entry.source.length;
      yield entry.source;
    } else {
      for await (const chunk of createReadStream(entry.source)) {
        const buf = chunk as Buffer;
        written += buf.length;
        if (written > entry.size) break;
        yield buf;
      }
    }
    if (written !== entry.size)
      throw new CorralError(ErrorCode.CONFLICT, `${entry.path} changed while it was being packed`);
    const pad = (BLOCK_BYTES - (entry.size % BLOCK_BYTES)) % BLOCK_BYTES;
    if (pad > 0) yield Buffer.alloc(pad);
  }
  yield Buffer.alloc(BLOCK_BYTES * 2);
}

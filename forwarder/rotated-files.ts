import { open, readdir, type FileHandle } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { headHash, sameInode, type FileIdentity } from './file-identity.js';

/** Siblings looked at when searching for a rotated file. */
const MAX_CANDIDATES = 64;
const COMPRESSED_RE = /\.(?:gz|bz2|xz|zst|lz4|zip|z)$/i;

export interface Predecessor {
  readonly path: string;
  readonly fh: FileHandle;
}

/**
 * Finds where a generation of `path` went: a sibling named after it (`app.log.1`,
 * `app.log-20240101`, not compressed) that is the same inode (renamed), or failing that, has
 * the same first line and at least `minSize` bytes (a copytruncate copy). Returns it opened.
 * Without `byInode`, only a copy will do (the inode is the truncated file itself).
 */
export async function findPredecessor(
  path: string,
  generation: FileIdentity,
  minSize: number,
  options: { readonly byInode: boolean } = { byInode: true },
): Promise<Predecessor | undefined> {
  const dir = dirname(path);
  const base = basename(path);
  let names: string[];
  try {
    names = await readdir(dir);
  } catch (e: unknown) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw e;
  }
  const candidates = names
    .filter((n) => n !== base && n.startsWith(base) && !COMPRESSED_RE.test(n))
    .sort()
    .slice(0, MAX_CANDIDATES);

  let byHead: Predecessor | undefined;
  for (const name of candidates) {
    const candidate = join(dir, name);
    let fh: FileHandle;
    try {
      fh = await open(candidate, 'r');
    } catch (e: unknown) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') continue;
      throw e;
    }
    let keep = false;
    try {
      const st = await fh.stat({ bigint: true });
      if (!st.isFile() || st.size < BigInt(minSize)) continue;
      if (options.byInode && sameInode({ dev: st.dev.toString(), ino: st.ino.toString() }, generation)) {
        await byHead?.fh.close();
        keep = true;
        return { path: candidate, fh };
      }
      if (!byHead && (await headHash(fh)) === generation.headHash) {
        byHead = { path: candidate, fh };
        keep = true;
      }
    } finally {
      if (!keep) await fh.close();
    }
  }
  return byHead;
}

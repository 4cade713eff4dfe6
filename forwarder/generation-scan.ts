import { open, readdir, stat, type FileHandle } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { headHash } from './file-identity.js';

/** Rotated siblings looked at, at most: the most recently modified ones when there are more. */
export const MAX_SIBLINGS = 256;
const COMPRESSED_RE = /\.(?:gz|bz2|xz|zst|lz4|zip|z)$/i;
/** What follows a path's name in its rotated siblings' names (`app.log.1`, `app.log-20240101`). */
const SUFFIX_START = new Set(['.', '-', '_']);

/** One file that may hold a generation of the followed path: the path itself or a rotated sibling. */
export interface Candidate {
  readonly file: string;
  /** The followed path itself (the newest generation lives there). */
  readonly isPath: boolean;
  /** Open for reading: whoever keeps the candidate keeps this, the rest are closed. */
  readonly fh: FileHandle;
  readonly dev: string;
  readonly ino: string;
  readonly size: number;
  readonly mtimeNs: bigint;
  readonly headHash: string;
}

export interface Scan {
  /** Identified files, one per inode, in no particular order. */
  readonly candidates: Candidate[];
  /** Files too young to tell (no complete first line yet): looked at again next time. */
  readonly unidentified: number;
  /** Siblings beyond MAX_SIBLINGS that were left out (the least recently modified). */
  readonly leftOut: number;
  /** Every rotated sibling name the directory listed, to tell whether a later listing differs. */
  readonly names: readonly string[];
}

/** A sibling's name says it is a rotated copy of `base`, not another log that shares a prefix. */
export function isRotatedName(base: string, name: string): boolean {
  return (
    name.length > base.length &&
    name.startsWith(base) &&
    SUFFIX_START.has(name[base.length] as string) &&
    !COMPRESSED_RE.test(name)
  );
}

async function openCandidate(file: string, isPath: boolean): Promise<Candidate | 'young' | undefined> {
  let fh: FileHandle;
  try {
    fh = await open(file, 'r');
  } catch (e: unknown) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'EISDIR') return undefined;
    throw e;
  }
  try {
    const st = await fh.stat({ bigint: true });
    if (!st.isFile()) {
      await fh.close();
      return undefined;
    }
    const hash = await headHash(fh);
    if (hash === undefined) {
      await fh.close();
      return 'young';
    }
    return {
      file,
      isPath,
      fh,
      dev: st.dev.toString(),
      ino: st.ino.toString(),
      size: Number(st.size),
      mtimeNs: st.mtimeNs,
      headHash: hash,
    };
  } catch (e: unknown) {
    await fh.close();
    throw e;
  }
}

/**
 * Finds every file that may hold a generation of `path`: the path and its rotated siblings
 * (not compressed ones), each opened and identified by inode and first line. Generations are
 * told apart by identity, never by name: names shift with every rotation.
 */
export async function scanGenerations(path: string): Promise<Scan> {
  const dir = dirname(path);
  const base = basename(path);
  let names: string[];
  try {
    names = await readdir(dir);
  } catch (e: unknown) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') names = [];
    else throw e;
  }
  const rotated = names.filter((n) => isRotatedName(base, n)).sort();
  let siblings = rotated.map((n) => join(dir, n));
  let leftOut = 0;
  if (siblings.length > MAX_SIBLINGS) {
    const stamped = await Promise.all(
      siblings.map(async (file) => ({
        file,
        mtimeMs: (await stat(file).catch(() => undefined))?.mtimeMs ?? 0,
      })),
    );
    stamped.sort((a, b) => b.mtimeMs - a.mtimeMs);
    leftOut = siblings.length - MAX_SIBLINGS;
    siblings = stamped.slice(0, MAX_SIBLINGS).map((s) => s.file);
  }
  const candidates: Candidate[] = [];
  const seen = new Set<string>();
  let unidentified = 0;
  try {
    for (const [file, isPath] of [[path, true] as const, ...siblings.map((f) => [f, false] as const)]) {
      const found = await openCandidate(file, isPath);
      if (found === 'young') unidentified++;
      if (found === undefined || found === 'young') continue;
      // A hard link to a file already found (the path and a sibling) is one generation.
      const inode = `${found.dev}:${found.ino}`;
      if (seen.has(inode)) {
        await found.fh.close();
        continue;
      }
      seen.add(inode);
      candidates.push(found);
    }
  } catch (e: unknown) {
    await closeCandidates(candidates);
    throw e;
  }
  return { candidates, unidentified, leftOut, names: rotated };
}

/** The rotated sibling names of `path` now, sorted (what `Scan.names` was when it was taken). */
export async function siblingNames(path: string): Promise<string[]> {
  const base = basename(path);
  try {
    return (await readdir(dirname(path))).filter((n) => isRotatedName(base, n)).sort();
  } catch (e: unknown) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw e;
  }
}

/** Closes the candidates' files, except those in `keep`. */
export async function closeCandidates(
  candidates: readonly Candidate[],
  keep?: ReadonlySet<Candidate>,
): Promise<void> {
  for (const c of candidates) if (!keep?.has(c)) await c.fh.close();
}

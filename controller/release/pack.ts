import { createHash, randomBytes } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { lstat, readdir, readFile, readlink, rename, unlink } from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';
import { Readable, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createGzip, constants as zlibConstants } from 'node:zlib';
import {
  CorralError,
  ErrorCode,
  linkTargetStaysInside,
  MAX_RELEASE_MANIFEST_BYTES,
  parseJsonWith,
  RELEASE_MANIFEST_FILE,
  RELEASE_SOURCE_FILE,
  RELEASE_VERSION_RE,
  ReleaseSourceManifest,
  type ReleaseManifest,
} from '../../protocol/index.js';
import { excludeMatcher, secretReason } from './secret-check.js';
import { tarBytes, type TarEntry } from './tar-writer.js';

/** Most entries a release may hold. */
export const MAX_RELEASE_ENTRIES = 200_000;

export interface PackOptions {
  /** The directory holding `corral-release.json` and what it includes. */
  readonly dir: string;
  readonly version: string;
  /** Where the `.tar.gz` goes (written atomically). */
  readonly out: string;
}

export interface PackResult {
  readonly file: string;
  readonly version: string;
  readonly sha256: string;
  readonly bytes: number;
  readonly entries: number;
  readonly manifest: ReleaseManifest;
}

function refuse(code: ErrorCode, message: string): CorralError {
  return new CorralError(code, message);
}

/** Reads and checks `DIR/corral-release.json`; the result is the manifest that goes in. */
async function readSource(
  dir: string,
  version: string,
): Promise<{ manifest: ReleaseManifest; source: ReleaseSourceManifest }> {
  if (!RELEASE_VERSION_RE.test(version)) {
    throw refuse(ErrorCode.VALIDATION, `version ${JSON.stringify(version)} is not a valid release version`);
  }
  const path = join(dir, RELEASE_SOURCE_FILE);
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (e: unknown) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') {
      throw refuse(ErrorCode.VALIDATION, `${path} is missing: it lists what the release includes`);
    }
    throw e;
  }
  const source = parseJsonWith(ReleaseSourceManifest, text, RELEASE_SOURCE_FILE, MAX_RELEASE_MANIFEST_BYTES);
  if (source.version !== undefined && source.version !== version) {
    throw refuse(
      ErrorCode.VALIDATION,
      `${RELEASE_SOURCE_FILE} says version ${source.version}, not ${version}`,
    );
  }
  // Fixed key order: the manifest's bytes depend only on its content.
  const manifest: ReleaseManifest = {
    version,
    start: { command: source.start.command, args: [...source.start.args] },
    ...(source.updater
      ? { updater: { command: source.updater.command, args: [...source.updater.args] } }
      : {}),
    ...(source.forwarder
      ? { forwarder: { command: source.forwarder.command, args: [...source.forwarder.args] } }
      : {}),
    include: [...source.include],
    ...(source.createdBy !== undefined ? { createdBy: source.createdBy } : {}),
  };
  return { manifest, source };
}

interface Walk {
  readonly root: string;
  readonly out: string;
  readonly excluded: (path: string) => boolean;
  readonly entries: Map<string, TarEntry>;
}

function addParents(walk: Walk, path: string): void {
  const parts = path.split('/');
  for (let i = 1; i < parts.length; i++) {
    const dir = parts.slice(0, i).join('/');
    if (!walk.entries.has(dir)) walk.entries.set(dir, { type: 'Directory', path: dir });
  }
}

async function visit(walk: Walk, path: string): Promise<void> {
  if (walk.excluded(path)) return;
  if (walk.entries.size >= MAX_RELEASE_ENTRIES) {
    throw refuse(ErrorCode.VALIDATION, `a release holds at most ${MAX_RELEASE_ENTRIES} entries`);
  }
  if (path === RELEASE_MANIFEST_FILE) {
    throw refuse(ErrorCode.VALIDATION, `${RELEASE_MANIFEST_FILE} is written by pack; it cannot be included`);
  }
  const abs = join(walk.root, ...path.split('/'));
  if (abs === walk.out)
    throw refuse(ErrorCode.VALIDATION, `the output file ${walk.out} is inside the release`);
  const st = await lstat(abs);
  addParents(walk, path);
  if (st.isDirectory()) {
    walk.entries.set(path, { type: 'Directory', path });
    const names = (await readdir(abs)).sort();
    for (const name of names) await visit(walk, `${path}/${name}`);
  } else if (st.isFile()) {
    if ((st.mode & 0o6000) !== 0) throw refuse(ErrorCode.UNSAFE_ARCHIVE, `${path} is setuid or setgid`);
    const secret = await secretReason(abs, path);
    if (secret !== undefined) {
      throw refuse(
        ErrorCode.RELEASE_REFUSED,
        `refusing to pack ${path}: ${secret}. Releases never carry secrets; list it under "exclude" in ${RELEASE_SOURCE_FILE} or remove it`,
      );
    }
    walk.entries.set(path, {
      type: 'File',
      path,
      executable: (st.mode & 0o111) !== 0,
      size: st.size,
      source: abs,
    });
  } else if (st.isSymbolicLink()) {
    const target = await readlink(abs);
    if (!linkTargetStaysInside(path, target)) {
      throw refuse(ErrorCode.UNSAFE_ARCHIVE, `${path} is a link to ${target}, outside the release`);
    }
    walk.entries.set(path, { type: 'SymbolicLink', path, linkpath: target });
  } else {
    throw refuse(ErrorCode.UNSAFE_ARCHIVE, `${path} is not a regular file, directory or link`);
  }
}

/**
 * Packs `dir` into a deterministic `.tar.gz`: exactly the paths the source manifest includes
 * (minus its excludes) plus a normalized `manifest.json`, entries sorted, owners 0/0, fixed
 * times and modes (0644/0755), gzip level 9. The same input gives the same bytes. Refuses
 * files that look like secrets, links leaving the tree and special files.
 */
export async function packRelease(options: PackOptions): Promise<PackResult> {
  const root = resolve(options.dir);
  const out = resolve(options.out);
  const { manifest, source } = await readSource(root, options.version);
  const walk: Walk = { root, out, excluded: excludeMatcher(source.exclude ?? []), entries: new Map() };
  for (const path of manifest.include) {
    try {
      await visit(walk, path);
    } catch (e: unknown) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') {
        throw refuse(ErrorCode.VALIDATION, `included path ${path} does not exist in ${root}`);
      }
      throw e;
    }
  }
  const manifestBytes = Buffer.from(`${JSON.stringify(manifest, null, 2)}\n`);
  walk.entries.set(RELEASE_MANIFEST_FILE, {
    type: 'File',
    path: RELEASE_MANIFEST_FILE,
    executable: false,
    size: manifestBytes.length,
    source: manifestBytes,
  });
  const entries = [...walk.entries.values()].sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));

  const hash = createHash('sha256');
  let bytes = 0;
  const tap = new Transform({
    transform(chunk: Buffer, _enc, done) {
      hash.update(chunk);
      bytes += chunk.length;
      done(null, chunk);
    },
  });
  const tmp = join(dirname(out), `.${basename(out)}.${randomBytes(6).toString('hex')}.tmp`);
  try {
    await pipeline(
      Readable.from(tarBytes(entries)),
      createGzip({ level: zlibConstants.Z_BEST_COMPRESSION }),
      tap,
      createWriteStream(tmp, { flags: 'wx', mode: 0o644 }),
    );
    await rename(tmp, out);
  } catch (e: unknown) {
    await unlink(tmp).catch(() => undefined /* never created, or already renamed */);
    throw e;
  }
  return {
    file: out,
    version: manifest.version,
    sha256: hash.digest('hex'),
    bytes,
    entries: entries.length,
    manifest,
  };
}

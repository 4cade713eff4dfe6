import { createReadStream } from 'node:fs';
import { lstat, readdir, realpath } from 'node:fs/promises';
import { join, sep } from 'node:path';
import { Transform } from 'node:stream';
import { createGunzip } from 'node:zlib';
import { Parser, Unpack, type ReadEntry } from 'tar';
import { CorralError, ErrorCode } from '../protocol/index.js';
import { ArchiveChecker, type ArchiveLimits } from './archive-rules.js';

/** Tar headers and padding allowed on top of the entries' own bytes, when decompressing. */
const TAR_OVERHEAD_BYTES = 64 * 1024 * 1024;

function unsafe(message: string, cause?: unknown): CorralError {
  return new CorralError(ErrorCode.UNSAFE_ARCHIVE, message, cause === undefined ? undefined : { cause });
}

interface TarSink {
  on(event: string, fn: (...args: unknown[]) => void): unknown;
  abort(error: Error): void;
}

/**
 * Streams `file` through gunzip (bounded: the decompressed stream may not exceed the limits
 * plus tar overhead) into `sink`, and resolves when the sink closes. The first refusal (set
 * through `refuse`) or error wins and becomes CORRAL_ERR_UNSAFE_ARCHIVE.
 */
function runTar(
  file: string,
  limits: ArchiveLimits,
  makeSink: (refuse: (reason: string) => void) => TarSink & NodeJS.WritableStream,
): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    let refused: string | undefined;
    let settled = false;
    const finish = (error?: CorralError): void => {
      if (settled) return;
      settled = true;
      if (error) {
        source.destroy();
        gunzip.destroy();
        reject(error);
      } else resolve();
    };
    const cap = limits.maxExtractedBytes + TAR_OVERHEAD_BYTES;
    let inflated = 0;
    const source = createReadStream(file);
    const gunzip = createGunzip();
    const counter = new Transform({
      transform(chunk: Buffer, _enc, done) {
        inflated += chunk.length;
        if (inflated > cap) done(unsafe(`archive decompresses to more than ${cap} bytes`));
        else done(null, chunk);
      },
    });
    const sink = makeSink((reason) => {
      refused ??= reason;
      sink.abort(unsafe(reason));
    });
    const fail = (e: unknown): void => {
      if (refused !== undefined) finish(unsafe(refused));
      else if (e instanceof CorralError) finish(e);
      else finish(unsafe(`not a valid .tar.gz: ${e instanceof Error ? e.message : String(e)}`, e));
    };
    source.on('error', fail);
    gunzip.on('error', fail);
    counter.on('error', fail);
    sink.on('error', fail);
    sink.on('close', () => (refused !== undefined ? finish(unsafe(refused)) : finish()));
    source.pipe(gunzip).pipe(counter).pipe(sink);
  });
}

/**
 * Reads every header of the archive without writing anything, and throws
 * CORRAL_ERR_UNSAFE_ARCHIVE at the first entry that is unsafe (absolute path, `..`, link out of
 * the tree, hard link, device, FIFO, setuid/setgid, duplicate, over the limits) or when the
 * archive is not a valid tar.gz. Returns the entry count and total size.
 */
export async function validateArchive(
  file: string,
  limits: ArchiveLimits,
): Promise<{ entries: number; bytes: number }> {
  const checker = new ArchiveChecker(limits);
  let sawEntry = false;
  await runTar(file, limits, (refuse) => {
    const parser = new Parser({
      strict: true,
      onReadEntry: (entry: ReadEntry) => {
        sawEntry = true;
        const reason = checker.check(entry);
        if (reason !== undefined) refuse(reason);
        entry.resume();
      },
    });
    return parser;
  });
  if (!sawEntry) throw unsafe('archive holds no entries');
  return { entries: checker.entries, bytes: checker.bytes };
}

/**
 * Unpacks a validated archive into `dest` (which must exist and be empty), re-checking every
 * entry on the way (a refusal aborts the whole extraction), never preserving owners, then
 * walks the result to confirm every link resolves inside `dest` and no special or setuid
 * file exists. Throws CORRAL_ERR_UNSAFE_ARCHIVE.
 */
export async function extractArchive(file: string, dest: string, limits: ArchiveLimits): Promise<void> {
  const checker = new ArchiveChecker(limits);
  await runTar(file, limits, (refuse) => {
    const unpack = new Unpack({
      cwd: dest,
      strict: true,
      preserveOwner: false,
      preservePaths: false,
      unlink: false,
      noMtime: false,
      umask: 0o022,
      filter: (_path: string, entry: unknown) => {
        const reason = checker.check(entry as ReadEntry);
        if (reason !== undefined) {
          refuse(reason);
          return false;
        }
        return true;
      },
    });
    return unpack;
  });
  await verifyTree(dest);
}

async function verifyTree(root: string): Promise<void> {
  const realRoot = await realpath(root);
  const entries = await readdir(root, { recursive: true, withFileTypes: true });
  for (const entry of entries) {
    const path = join(entry.parentPath, entry.name);
    const st = await lstat(path);
    if ((st.mode & 0o6000) !== 0) throw unsafe(`unpacked ${entry.name} carries setuid or setgid`);
    if (st.isSymbolicLink()) {
      let resolved: string;
      try {
        resolved = await realpath(path);
      } catch (e: unknown) {
        if ((e as NodeJS.ErrnoException).code === 'ENOENT') continue; // dangling, checked lexically
        throw unsafe(`link ${entry.name} cannot be resolved`, e);
      }
      if (resolved !== realRoot && !resolved.startsWith(realRoot + sep)) {
        throw unsafe(`link ${entry.name} resolves outside the release`);
      }
    } else if (!st.isFile() && !st.isDirectory()) {
      throw unsafe(`unpacked ${entry.name} is not a regular file, directory or link`);
    }
  }
}

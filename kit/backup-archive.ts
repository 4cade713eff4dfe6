import { mkdir, open, type FileHandle } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { Readable } from 'node:stream';
import {
  BACKUP_FILES,
  BackupManifest,
  MAX_BACKUP_MANIFEST_BYTES,
  type BackupFileRule,
} from '../protocol/backup.js';
import { CorralError, ErrorCode, isCorralError } from '../protocol/errors.js';
import { parseJsonWith } from '../protocol/validate.js';

/**
 * The archive inside a backup's encryption (protocol/backup.ts): a 4-byte big-endian length,
 * the manifest as JSON, then each file's bytes in the manifest's order, nothing after.
 */

/** One file to pack: exactly `bytes` bytes, read when its turn comes. */
export interface PackSource {
  readonly path: string;
  readonly bytes: number;
  read(): AsyncIterable<Buffer>;
}

/**
 * The archive of `manifest` and its files as a stream. A source that yields more or fewer
 * bytes than the manifest says fails the stream with CORRAL_ERR_WRITE_FAILED.
 */
export function packBackup(manifest: BackupManifest, sources: readonly PackSource[]): Readable {
  async function* generate(): AsyncGenerator<Buffer> {
    const json = Buffer.from(JSON.stringify(manifest), 'utf8');
    const length = Buffer.alloc(4);
    length.writeUInt32BE(json.length, 0);
    yield Buffer.concat([length, json]);
    for (const entry of manifest.files) {
      const source = sources.find((s) => s.path === entry.path);
      if (!source) throw new CorralError(ErrorCode.WRITE_FAILED, `no source for ${entry.path}`);
      let sent = 0;
      for await (const chunk of source.read()) {
        sent += chunk.length;
        if (sent > entry.bytes) break;
        yield chunk;
      }
      if (sent !== entry.bytes)
        throw new CorralError(ErrorCode.WRITE_FAILED, `${entry.path} changed size while it was packed`);
    }
  }
  return Readable.from(generate(), { objectMode: false });
}

const damaged = (why: string): CorralError =>
  new CorralError(ErrorCode.BACKUP_DAMAGED, `the backup's archive is damaged: ${why}`);

/** Reads exact byte counts from a stream of buffers. */
class ByteReader {
  #rest: Buffer = Buffer.alloc(0);
  readonly #it: AsyncIterator<Buffer>;

  constructor(source: AsyncIterable<Buffer>) {
    this.#it = source[Symbol.asyncIterator]();
  }

  /** Up to `max` bytes (at least one), or undefined at the end. */
  async some(max: number): Promise<Buffer | undefined> {
    if (this.#rest.length === 0) {
      const next = await this.#it.next();
      if (next.done) return undefined;
      this.#rest = next.value;
    }
    const out = this.#rest.subarray(0, max);
    this.#rest = this.#rest.subarray(out.length);
    return out;
  }

  async exactly(n: number, what: string): Promise<Buffer> {
    const parts: Buffer[] = [];
    for (let got = 0; got < n;) {
      const part = await this.some(n - got);
      if (!part) throw damaged(`it ends inside ${what}`);
      parts.push(part);
      got += part.length;
    }
    return Buffer.concat(parts);
  }

  async atEnd(): Promise<boolean> {
    for (;;) {
      const part = await this.some(Number.MAX_SAFE_INTEGER);
      if (!part) return true;
      if (part.length > 0) return false;
    }
  }
}

/** The manifest, checked: its schema, only files of BACKUP_FILES, each once, within its size. */
function checkManifest(json: Buffer): { manifest: BackupManifest; rules: BackupFileRule[] } {
  let manifest: BackupManifest;
  try {
    manifest = parseJsonWith(
      BackupManifest,
      json.toString('utf8'),
      'backup manifest',
      MAX_BACKUP_MANIFEST_BYTES,
    );
  } catch (e: unknown) {
    if (isCorralError(e)) throw damaged(e.message);
    throw e;
  }
  const seen = new Set<string>();
  const rules: BackupFileRule[] = [];
  for (const f of manifest.files) {
    const rule = BACKUP_FILES.find((r) => r.path === f.path);
    if (!rule) throw damaged(`it holds ${f.path}, which is not a controller state file`);
    if (seen.has(f.path)) throw damaged(`it holds ${f.path} twice`);
    if (f.bytes > rule.maxBytes) throw damaged(`${f.path} is larger than ${rule.maxBytes} bytes`);
    seen.add(f.path);
    rules.push(rule);
  }
  return { manifest, rules };
}

export interface ExtractProgress {
  (bytes: number): void;
}

/**
 * Reads an archive (the plaintext of a backup) and writes its files under `dir` (which must
 * exist and be empty; subdirectories are made 0700), each with its rule's mode, whatever the
 * archive says, and fsynced. `dir` undefined: only checks it. Returns the manifest. Throws
 * CORRAL_ERR_BACKUP_DAMAGED for an archive that is malformed, names another file, holds a file
 * larger than its bound or more or fewer bytes than its manifest says; the caller removes
 * `dir` then.
 */
export async function extractBackup(
  plain: AsyncIterable<Buffer>,
  dir: string | undefined,
  progress?: ExtractProgress,
): Promise<BackupManifest> {
  const reader = new ByteReader(plain);
  const length = (await reader.exactly(4, 'the manifest length')).readUInt32BE(0);
  if (length > MAX_BACKUP_MANIFEST_BYTES)
    throw damaged(`its manifest is larger than ${MAX_BACKUP_MANIFEST_BYTES} bytes`);
  const { manifest, rules } = checkManifest(await reader.exactly(length, 'the manifest'));
  let done = 0;
  for (const [i, entry] of manifest.files.entries()) {
    const rule = rules[i];
    if (!rule) throw damaged(`no rule for ${entry.path}`);
    let fh: FileHandle | undefined;
    if (dir !== undefined) {
      const target = join(dir, entry.path);
      await mkdir(dirname(target), { recursive: true, mode: 0o700 });
      fh = await open(target, 'wx', rule.mode);
    }
    try {
      await fh?.chmod(rule.mode);
      for (let left = entry.bytes; left > 0;) {
        const part = await reader.some(left);
        if (!part) throw damaged(`it ends inside ${entry.path}`);
        if (fh) await fh.write(part);
        left -= part.length;
        done += part.length;
        progress?.(done);
      }
      await fh?.sync();
    } finally {
      await fh?.close();
    }
  }
  if (!(await reader.atEnd())) throw damaged('bytes follow its last file');
  return manifest;
}

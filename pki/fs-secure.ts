import { randomBytes } from 'node:crypto';
import { chmod, mkdir, open, rename, stat, unlink } from 'node:fs/promises';
import { dirname, join, basename } from 'node:path';
import { PkiError, PkiErrorCode } from './errors.js';

export const PRIVATE_FILE_MODE = 0o600;
export const PRIVATE_DIR_MODE = 0o700;

/** Creates `dir` (and parents) and forces it to 0700. */
export async function ensurePrivateDir(dir: string): Promise<void> {
  await mkdir(dir, { recursive: true, mode: PRIVATE_DIR_MODE });
  await chmod(dir, PRIVATE_DIR_MODE);
}

/**
 * Writes `data` to `path` so that readers see either the old file or the whole new one:
 * a temp file in the same directory, fsync, then rename (and fsync of the directory). The
 * file gets `mode` before any byte is written, so a key is never readable by others even for
 * an instant. `durable: false` skips the fsyncs, for data whose loss after a crash only
 * repeats work (offsets, caches); the rename still keeps readers from a half-written file.
 */
export async function writeFileAtomic(
  path: string,
  data: string | Uint8Array,
  mode = 0o644,
  options: { readonly durable?: boolean } = {},
): Promise<void> {
  const durable = options.durable ?? true;
  const tmp = join(dirname(path), `.${basename(path)}.${randomBytes(6).toString('hex')}.tmp`);
  const fh = await open(tmp, 'wx', mode);
  try {
    await fh.chmod(mode);
    await fh.writeFile(data);
    if (durable) await fh.sync();
  } finally {
    await fh.close();
  }
  try {
    await rename(tmp, path);
  } catch (e: unknown) {
    await unlink(tmp).catch(() => undefined /* already gone: nothing to clean */);
    throw e;
  }
  if (durable) await syncDir(dirname(path));
}

/** fsyncs a directory so a rename in it survives a crash. */
export async function syncDir(dir: string): Promise<void> {
  const fh = await open(dir, 'r');
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

/**
 * Throws CORRAL_ERR_KEY_PERMISSIONS when a private key file can be read or written by
 * anyone but its owner.
 */
export async function assertPrivateFile(path: string): Promise<void> {
  const st = await stat(path);
  if ((st.mode & 0o077) !== 0) {
    throw new PkiError(
      PkiErrorCode.KEY_PERMISSIONS,
      `private key ${path} has mode ${(st.mode & 0o777).toString(8).padStart(4, '0')}; it must be 0600 (run: chmod 600 ${path})`,
    );
  }
}

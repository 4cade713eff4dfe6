import { mkdir, open, stat, type FileHandle } from 'node:fs/promises';
import { dirname } from 'node:path';
import { CorralError, ErrorCode } from '../protocol/errors.js';

/**
 * The worker's RFC 5424 log file, which the forwarder tails. Appends are serialized and
 * whole lines at a time. When the file is renamed away (rename-and-create rotation) or
 * deleted, the next append reopens the path; copytruncate needs nothing since we append.
 */
export interface WorkerLog {
  readonly path: string;
  /** Appends lines (each without its newline). Resolves once written; CORRAL_ERR_CLOSED after `close()`. */
  append(lines: readonly string[]): Promise<void>;
  /** Writes what was appended, then closes the file; a second call waits for the same. */
  close(): Promise<void>;
}

const LOG_FILE_MODE = 0o640;

export function createWorkerLog(path: string): WorkerLog {
  let fh: FileHandle | undefined;
  let ino = -1;
  let chain: Promise<void> = Promise.resolve();
  let closing: Promise<void> | undefined;

  async function ensureOpen(): Promise<FileHandle> {
    let current: number | undefined;
    try {
      current = (await stat(path)).ino;
    } catch (e: unknown) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
    }
    if (fh && current === ino) return fh;
    await fh?.close();
    await mkdir(dirname(path), { recursive: true, mode: 0o750 });
    fh = await open(path, 'a', LOG_FILE_MODE);
    ino = (await fh.stat()).ino;
    return fh;
  }

  async function write(lines: readonly string[]): Promise<void> {
    if (lines.length === 0) return;
    const handle = await ensureOpen();
    await handle.write(`${lines.join('\n')}\n`);
  }

  return {
    path,
    append(lines) {
      if (closing) return Promise.reject(new CorralError(ErrorCode.CLOSED, 'worker log is closed'));
      const next = chain.then(() => write(lines));
      chain = next.catch(() => undefined /* the caller of this append gets the error */);
      return next;
    },
    close() {
      closing ??= (async () => {
        await chain;
        await fh?.close();
        fh = undefined;
      })();
      return closing;
    },
  };
}

import { mkdir, open, stat, type FileHandle } from 'node:fs/promises';
import { dirname } from 'node:path';
import { SingleFlight } from './single-flight.js';
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
/**
 * Appends that may wait behind the one being written: a few per service stream. A refused one
 * fails its pump, which leaves its capture offsets alone and reads the same lines again.
 */
const WORKER_LOG_MAX_QUEUED = 1024;

export function createWorkerLog(path: string): WorkerLog {
  let fh: FileHandle | undefined;
  let ino = -1;
  const appends = new SingleFlight({ name: 'worker log', maxQueued: WORKER_LOG_MAX_QUEUED });
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
      return appends.run(() => write(lines));
    },
    close() {
      // A second close() waits for the first.
      closing ??= (async () => {
        await appends.idle();
        await fh?.close();
        fh = undefined;
      })();
      return closing;
    },
  };
}

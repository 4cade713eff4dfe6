import { open } from 'node:fs/promises';

const TAIL_BYTES = 2048;

/** The last couple of KiB of a daemon's log, for an error message; '' when unreadable. */
export async function tailOf(file: string, bytes = TAIL_BYTES): Promise<string> {
  let handle;
  try {
    handle = await open(file, 'r');
  } catch {
    return ''; // ENOENT: the daemon never wrote anything
  }
  try {
    const { size } = await handle.stat();
    const length = Math.min(size, bytes);
    const buf = Buffer.alloc(length);
    await handle.read(buf, 0, length, size - length);
    return buf.toString('utf8').trim();
  } finally {
    await handle.close();
  }
}

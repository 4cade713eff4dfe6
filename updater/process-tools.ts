import { open } from 'node:fs/promises';
import { readEnviron } from '../kit/proc.js';

/**
 * Whether process `pid` carries `NAME=value` in its environment: how an updater recognizes an
 * agent it started even after a restart, and never signals a stranger that reused the pid.
 * Linux (/proc); false when it cannot tell (gone, or not ours to read).
 */
export async function hasEnvToken(pid: number, name: string, value: string): Promise<boolean> {
  return (await readEnviron(pid))?.includes(`${name}=${value}`) ?? false;
}

/** The last `maxBytes` of `path` from byte `from` on, as text; '' when there is none. */
export async function tailFile(path: string, from: number, maxBytes: number): Promise<string> {
  let fh;
  try {
    fh = await open(path, 'r');
  } catch (e: unknown) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return '';
    throw e;
  }
  try {
    const { size } = await fh.stat();
    const start = Math.max(size < from ? 0 : from, size - maxBytes);
    const buf = Buffer.alloc(size - start);
    const { bytesRead } = await fh.read(buf, 0, buf.length, start);
    return buf.subarray(0, bytesRead).toString('utf8');
  } finally {
    await fh.close();
  }
}

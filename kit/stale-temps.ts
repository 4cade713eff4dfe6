import { randomBytes } from 'node:crypto';
import { readdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { isAlive } from './proc.js';

/**
 * Temp names that say which process made them: `<prefix><pid>-<12 hex><suffix>`. A process
 * killed (SIGKILL, power cut) before it renames or removes its temp leaves one behind; the
 * next run of the same command removes those of dead processes (removeStaleTemps), so they
 * never accumulate and a live run's temp is never touched.
 */
export const ownedTempName = (prefix: string, suffix: string): string =>
  `${prefix}${process.pid}-${randomBytes(6).toString('hex')}${suffix}`;

const escape = (s: string): string => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

/** At most this many stale temps are removed per call (bounded work in a crowded directory). */
const MAX_STALE_REMOVED = 100;

/**
 * Removes (recursively) the entries of `dir` named like ownedTempName(prefix, suffix) whose
 * process is gone; returns their names. A missing `dir` holds none.
 */
export async function removeStaleTemps(dir: string, prefix: string, suffix: string): Promise<string[]> {
  const re = new RegExp(`^${escape(prefix)}(\\d{1,10})-[0-9a-f]{12}${escape(suffix)}$`);
  let names: string[];
  try {
    names = await readdir(dir);
  } catch (e: unknown) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw e;
  }
  const removed: string[] = [];
  for (const name of names) {
    if (removed.length >= MAX_STALE_REMOVED) break;
    const m = re.exec(name);
    const pid = Number(m?.[1]);
    if (!m || pid === process.pid || (await isAlive(pid))) continue;
    await rm(join(dir, name), { recursive: true, force: true });
    removed.push(name);
  }
  return removed;
}

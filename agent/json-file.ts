import { randomBytes } from 'node:crypto';
import { open, readFile, rename, unlink } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import type { Static, TSchema } from '@sinclair/typebox';
import { parseJsonWith } from '../protocol/validate.js';

/**
 * Writes JSON so readers see the old file or the whole new one (temp file + rename).
 * `durable` adds fsyncs, for state whose loss would change behaviour (desired state, process
 * records); offsets and caches skip them, since losing one only repeats work.
 */
export async function writeJsonAtomic(
  path: string,
  value: unknown,
  durable: boolean,
  mode = 0o600,
): Promise<void> {
  const tmp = join(dirname(path), `.${basename(path)}.${randomBytes(6).toString('hex')}.tmp`);
  const fh = await open(tmp, 'wx', mode);
  try {
    await fh.writeFile(`${JSON.stringify(value)}\n`);
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
  if (durable) {
    const dir = await open(dirname(path), 'r');
    try {
      await dir.sync();
    } finally {
      await dir.close();
    }
  }
}

/** Reads and validates a JSON file; undefined when it does not exist. */
export async function readJsonFile<T extends TSchema>(
  path: string,
  schema: T,
  what: string,
  maxBytes: number,
): Promise<Static<T> | undefined> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (e: unknown) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw e;
  }
  return parseJsonWith(schema, text, what, maxBytes);
}

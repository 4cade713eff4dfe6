import { readFile } from 'node:fs/promises';
import type { Static, TSchema } from '@sinclair/typebox';
import { writeFileAtomic } from '../pki/fs-secure.js';
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
  await writeFileAtomic(path, `${JSON.stringify(value)}\n`, mode, { durable });
}

/**
 * Reads a JSON file of bounded size and validates it; undefined when the file does not exist.
 * Throws CORRAL_ERR_VALIDATION / CORRAL_ERR_PAYLOAD_TOO_LARGE for a bad one, and the read
 * error for any other failure than ENOENT.
 */
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

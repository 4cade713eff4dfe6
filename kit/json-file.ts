import type { Static, TSchema } from '@sinclair/typebox';
import { writeFileAtomic } from '../pki/fs-secure.js';
import { readJsonFileWith } from '../protocol/validate.js';

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

/** Reads and validates a JSON file; undefined when it does not exist. */
export async function readJsonFile<T extends TSchema>(
  path: string,
  schema: T,
  what: string,
  maxBytes: number,
): Promise<Static<T> | undefined> {
  return readJsonFileWith(schema, path, what, maxBytes);
}

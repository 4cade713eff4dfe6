import { randomBytes } from 'node:crypto';
import { mkdir, rename, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { ENDPOINTS_FILE } from '../protocol/constants.js';
import { Endpoints } from '../protocol/endpoints.js';
import { readJsonFile } from './json-file.js';

const MAX_ENDPOINTS_FILE_BYTES = 16 * 1024;

/** Writes `stateDir/run/endpoints.json` atomically (temp file + rename). */
export async function writeEndpointsFile(stateDir: string, endpoints: Endpoints): Promise<string> {
  const path = join(stateDir, ENDPOINTS_FILE);
  await mkdir(dirname(path), { recursive: true, mode: 0o700 });
  const tmp = `${path}.${randomBytes(6).toString('hex')}.tmp`;
  await writeFile(tmp, `${JSON.stringify(endpoints, null, 2)}\n`, { mode: 0o644 });
  await rename(tmp, path);
  return path;
}

/** Reads and validates `stateDir/run/endpoints.json`; undefined when absent. */
export async function readEndpointsFile(stateDir: string): Promise<Endpoints | undefined> {
  return readJsonFile(join(stateDir, ENDPOINTS_FILE), Endpoints, 'endpoints file', MAX_ENDPOINTS_FILE_BYTES);
}

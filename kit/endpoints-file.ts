import { randomBytes } from 'node:crypto';
import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { ENDPOINTS_FILE } from './constants.js';
import { Endpoints } from './endpoints.js';
import { parseJsonWith } from './validate.js';

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
  let text: string;
  try {
    text = await readFile(join(stateDir, ENDPOINTS_FILE), 'utf8');
  } catch (e: unknown) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw e;
  }
  return parseJsonWith(Endpoints, text, 'endpoints file', MAX_ENDPOINTS_FILE_BYTES);
}

/** `host:port` for a bound AddressInfo-like value, with IPv6 in brackets. */
export function formatHostPort(host: string, port: number): string {
  return host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;
}

/** Splits `host:port` (IPv6 in brackets); throws on anything else. */
export function parseHostPort(value: string): { host: string; port: number } {
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([^:\s[\]]+)):(\d{1,5})$/.exec(value.trim());
  const port = m ? Number(m[3]) : NaN;
  if (!m || port > 65535) throw new Error(`expected HOST:PORT, got ${JSON.stringify(value)}`);
  return { host: m[1] ?? m[2] ?? '', port };
}

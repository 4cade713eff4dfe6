import { randomBytes } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { PRIVATE_FILE_MODE, writeFileAtomic } from '../../pki/index.js';
import { isCorralError } from '../../protocol/errors.js';
import { ControllerStateManifest, MAX_STATE_MANIFEST_BYTES } from '../../protocol/state-manifest.js';
import { parseJsonWith } from '../../protocol/validate.js';
import { STATE_FILES, type StateProblem } from './state-files.js';
import type { StatePaths } from './state-paths.js';
import type { DatabaseKind } from '../db/database-target.js';

export type ManifestRead =
  | { readonly kind: 'absent' }
  | { readonly kind: 'ok'; readonly manifest: ControllerStateManifest }
  | { readonly kind: 'damaged'; readonly problem: StateProblem };

/** Reads `state-manifest.json`; a present but unreadable or invalid one is a problem, never "absent". */
export async function readControllerManifest(paths: StatePaths): Promise<ManifestRead> {
  let text: string;
  try {
    text = await readFile(paths.manifest, 'utf8');
  } catch (e: unknown) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return { kind: 'absent' };
    throw e;
  }
  const problem = (what: string): ManifestRead => ({
    kind: 'damaged',
    problem: { file: paths.manifest, group: 'manifest', problem: what },
  });
  if (text.length === 0) return problem('is empty (0 bytes)');
  try {
    return {
      kind: 'ok',
      manifest: parseJsonWith(ControllerStateManifest, text, 'state manifest', MAX_STATE_MANIFEST_BYTES),
    };
  } catch (e: unknown) {
    if (isCorralError(e)) return problem(`is damaged: ${e.message}`);
    throw e;
  }
}

export function newStateId(): string {
  return randomBytes(16).toString('hex');
}

/** A manifest for a new state dir; with a PostgreSQL database it lists no database file. */
export function newManifest(
  stateId: string,
  addresses: readonly string[],
  database: DatabaseKind = 'sqlite',
): ControllerStateManifest {
  return {
    version: 1,
    daemon: 'controller',
    complete: false,
    stateId,
    caFingerprint: null,
    addresses: [...addresses],
    files: STATE_FILES.filter((f) => database === 'sqlite' || f.group !== 'database').map((f) => f.rel),
    ...(database === 'postgres' && { database }),
  };
}

/** Durable (fsync of file and directory): the manifest is what later starts trust. */
export function writeControllerManifest(paths: StatePaths, manifest: ControllerStateManifest): Promise<void> {
  return writeFileAtomic(paths.manifest, `${JSON.stringify(manifest, null, 2)}\n`, PRIVATE_FILE_MODE);
}

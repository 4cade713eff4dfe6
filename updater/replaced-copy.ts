import { lstat, rename } from 'node:fs/promises';
import { join } from 'node:path';
import type { InstalledRelease } from '../protocol/index.js';
import { removeTree, type ReleaseLayout } from './release-layout.js';
import type { StateStore } from './state-store.js';

/*
 * An update of a version that is installed but not active (the rollback target pushed again)
 * replaces that copy only if it ends `updated`. The steps, each safe to crash after: the old
 * copy is journaled in the intent (`replaced`), moved to `.staging-<id>/replaced`, the new tree
 * takes its place; unless the update succeeds, `restoreReplaced` undoes it (in process, or in
 * recover.ts at the next start).
 */

/** Where an installed copy that an update replaces waits, inside that update's staging dir. */
export function replacedDir(stagingDir: string): string {
  return join(stagingDir, 'replaced');
}

/**
 * Moves the copy of `version` kept in `stagingDir` back to `releases/<version>` and lists it as
 * installed again. Without a kept copy (the crash came before it was moved) the one in
 * `releases/` is still the old one and stays.
 */
export async function restoreReplaced(
  layout: ReleaseLayout,
  store: StateStore,
  version: string,
  stagingDir: string,
  replaced: InstalledRelease,
): Promise<void> {
  const kept = replacedDir(stagingDir);
  if (await exists(kept)) {
    await removeTree(layout.releaseDir(version));
    await rename(kept, layout.releaseDir(version));
  }
  if (!(await exists(layout.releaseDir(version)))) return;
  await store.update((s) => ({
    ...s,
    installed: [...s.installed.filter((r) => r.version !== version), replaced],
  }));
}

async function exists(path: string): Promise<boolean> {
  try {
    await lstat(path);
    return true;
  } catch (e: unknown) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw e;
  }
}

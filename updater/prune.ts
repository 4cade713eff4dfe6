import type { InstalledRelease } from '../protocol/index.js';
import { listReleaseDirs, removeTree } from './release-layout.js';
import { join } from 'node:path';

/**
 * Which installed releases stay: the active one, the rollback target, then the most recently
 * installed, `keep` in all (at least the first two).
 */
export function releasesToKeep(
  installed: readonly InstalledRelease[],
  current: string | null,
  previous: string | null,
  keep: number,
): Set<string> {
  const kept = new Set<string>();
  if (current !== null) kept.add(current);
  if (previous !== null) kept.add(previous);
  const newest = [...installed].sort((a, b) =>
    a.installedAt < b.installedAt ? 1 : a.installedAt > b.installedAt ? -1 : 0,
  );
  for (const r of newest) {
    if (kept.size >= keep) break;
    kept.add(r.version);
  }
  return kept;
}

/**
 * Removes release directories under `dir` that are not in `kept` (older releases, and orphans
 * left by an interrupted update). Returns the versions removed.
 */
export async function removeReleasesExcept(dir: string, kept: ReadonlySet<string>): Promise<string[]> {
  const removed: string[] = [];
  for (const version of await listReleaseDirs(dir)) {
    if (kept.has(version)) continue;
    await removeTree(join(dir, version));
    removed.push(version);
  }
  return removed;
}

import { rename } from 'node:fs/promises';
import { join } from 'node:path';
import { syncDir } from '../../pki/index.js';
import type { Clock } from '../clock.js';
import { DATABASE_COMPANIONS, STATE_FILES, type StateGroup, type StateProblem } from './state-files.js';
import type { StatePaths } from './state-paths.js';

/** One file `--reinitialize` replaced. */
export interface Reinitialized {
  readonly file: string;
  /** What was wrong with it, or why it goes although it was whole (it belongs to a replaced CA). */
  readonly problem: string;
  /** Where the old file now is; null when it was missing. */
  readonly movedTo: string | null;
}

/** `20240102T030405Z`: sorts by time and holds no characters a shell would mind. */
function stamp(clock: Clock): string {
  return new Date(clock.now())
    .toISOString()
    .replace(/[-:]/g, '')
    .replace(/\.\d+Z$/, 'Z');
}

async function moveIfPresent(from: string, to: string): Promise<boolean> {
  try {
    await rename(from, to);
    return true;
  } catch (e: unknown) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw e;
  }
}

/**
 * Moves every file of `groups` to `<file>.damaged-<time>` (nothing is deleted, so a mistaken
 * reinitialize can be undone by hand) and fsyncs the directories, so init then makes them anew.
 */
export async function moveAside(
  paths: StatePaths,
  groups: readonly StateGroup[],
  problems: readonly StateProblem[],
  clock: Clock,
): Promise<Reinitialized[]> {
  const suffix = `.damaged-${stamp(clock)}`;
  const files = STATE_FILES.filter((f) => groups.includes(f.group)).map((f) => join(paths.root, f.rel));
  if (groups.includes('database')) files.push(...DATABASE_COMPANIONS.map((c) => join(paths.root, c)));
  if (groups.includes('manifest')) files.push(paths.manifest);
  const out: Reinitialized[] = [];
  const dirs = new Set<string>();
  const why = (file: string): string => {
    if (DATABASE_COMPANIONS.some((c) => file.endsWith(`/${c}`))) return 'goes with the database';
    const group = STATE_FILES.find((f) => join(paths.root, f.rel) === file)?.group;
    if (group !== 'ca' && groups.includes('ca')) return 'is issued again by the new CA';
    return 'is replaced with the rest of its pair';
  };
  for (const file of files) {
    const known = problems.find((p) => p.file === file);
    const moved = await moveIfPresent(file, file + suffix);
    if (!moved && !known) continue;
    if (moved) dirs.add(join(file, '..'));
    out.push({ file, problem: known?.problem ?? why(file), movedTo: moved ? file + suffix : null });
  }
  for (const dir of dirs) await syncDir(dir);
  return out;
}

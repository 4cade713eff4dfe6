import { lstat, readFile, readlink, stat, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from 'pino';
import {
  CorralError,
  ErrorCode,
  MAX_RELEASE_MANIFEST_BYTES,
  parseJsonWith,
  RELEASE_MANIFEST_FILE,
  RELEASE_VERSION_RE,
  ReleaseManifest,
  type HistoryEntry,
  type InstalledRelease,
  type UpdaterStateFile,
} from '../protocol/index.js';
import { removeReleasesExcept } from './prune.js';
import { listReleaseDirs, type ReleaseLayout } from './release-layout.js';
import { EMPTY_STATE, moveAside, type FileCondition, type StateStore } from './state-store.js';

/** What `--reinitialize` destroys, as the refusal and the help text say it. */
export const REINITIALIZE_DESTROYS =
  'discards the journal and the release history (kept aside as *.damaged-*), removes the current ' +
  'link if it points at no release, and removes every release except the one current points at, ' +
  'so there is no rollback target until the next update';

export interface OpenStateOptions {
  readonly layout: ReleaseLayout;
  readonly store: StateStore;
  readonly log: Logger;
  readonly clock: () => Date;
  /** Start over where the state cannot be rebuilt (instead of refusing to start). */
  readonly reinitialize: boolean;
}

export interface StateOpening {
  /** `fresh`: first start; `loaded`: the journal was usable; `rebuilt` / `reinitialized`. */
  readonly how: 'fresh' | 'loaded' | 'rebuilt' | 'reinitialized';
  /** What an operator must be told, each naming the file concerned. */
  readonly warnings: readonly string[];
}

/** Logs a warning (constant message, data in fields) and keeps its sentence for the operator. */
type Warn = (fields: Record<string, unknown>, msg: string, text: string) => void;

type CurrentLink =
  | { readonly kind: 'none' }
  | { readonly kind: 'release'; readonly version: string }
  | { readonly kind: 'broken'; readonly why: string };

interface ReleaseDir {
  readonly version: string;
  /** When it appeared (the later of mtime and ctime: a rename into releases/ sets ctime). */
  readonly seenAt: Date;
}

interface Tree {
  readonly current: CurrentLink;
  readonly releases: readonly ReleaseDir[];
  readonly selfReleases: readonly ReleaseDir[];
}

/**
 * Loads the journal and history and decides whether the updater may start on them. A first
 * start (no journal, nothing installed) starts empty. A journal that is missing, empty or
 * damaged while the tree says releases were installed is rebuilt from the tree when the tree
 * is consistent (`current` points at a release on disk, or nothing is installed at all), with
 * a warning naming the file and what was lost; otherwise it throws CORRAL_ERR_STATE_DAMAGED
 * naming the file and the recovery, unless `reinitialize`. A damaged history is moved aside and
 * started empty, with a warning. A damaged file is never overwritten in place.
 */
export async function openState(o: OpenStateOptions): Promise<StateOpening> {
  const { layout, store, log } = o;
  const found = await store.load();
  const tree = await inspectTree(layout);
  const warnings: string[] = [];
  const warn: Warn = (fields, msg, text) => {
    log.warn(fields, msg);
    warnings.push(text);
  };
  const installedSomething =
    tree.current.kind !== 'none' || tree.releases.length > 0 || tree.selfReleases.length > 0;

  // No journal and nothing installed: a first start (a history may exist already, from a push
  // that was refused before anything was journaled), and there is nothing a journal could hold.
  if (found.state.kind === 'missing' && !installedSomething) {
    await checkHistory(o, found.history, warn);
    return { how: 'fresh', warnings };
  }

  if (found.state.kind === 'ok') {
    await checkHistory(o, found.history, warn);
    await dropVanished(o, tree, warn);
    if (o.reinitialize)
      log.info({ file: layout.stateFile }, 'reinitialize not needed: the journal is usable');
    return { how: 'loaded', warnings };
  }

  const problem = found.state.kind === 'missing' ? 'is missing' : found.state.problem;
  const why = inconsistency(tree);
  if (why !== undefined) {
    if (!o.reinitialize) {
      throw new CorralError(
        ErrorCode.STATE_DAMAGED,
        `updater journal ${layout.stateFile} ${problem}, and the release tree cannot rebuild it: ${why}. ` +
          `Restore ${layout.stateFile} from a backup, or start once with \`corral updater serve --reinitialize\`, ` +
          `which ${REINITIALIZE_DESTROYS}`,
      );
    }
    await reinitialize(o, found.state, found.history, tree, problem, why, warn);
    return { how: 'reinitialized', warnings };
  }

  // Rebuild: every release on disk counts as installed (digest unknown); `current` stays.
  const current = tree.current.kind === 'release' ? tree.current.version : null;
  const history = found.history.kind === 'ok' ? store.history : [];
  const previous = pickPrevious(history, current, tree.releases);
  const state: UpdaterStateFile = {
    ...EMPTY_STATE,
    previous: previous?.version ?? null,
    installed: tree.releases.map(entryOf),
    self: { installed: tree.selfReleases.map(entryOf) },
  };
  const asideState = found.state.kind === 'damaged' ? await moveAside(layout.stateFile, o.clock()) : null;
  await store.save(state);
  const lost = ['the digests of the installed releases', 'whatever update may have been in flight'];
  if (found.history.kind !== 'ok') {
    const aside = found.history.kind === 'damaged' ? await moveAside(layout.historyFile, o.clock()) : null;
    const how = found.history.kind === 'missing' ? 'is missing' : found.history.problem;
    lost.push(
      `the release history (${layout.historyFile} ${how}${aside ? `, kept as ${aside}` : ''}; ` +
        'versions that rolled back here are no longer refused)',
    );
    await store.saveHistory([]);
  }
  const releases = state.installed.map((r) => r.version);
  warn(
    {
      file: layout.stateFile,
      problem,
      current,
      previous: previous?.version ?? null,
      releases,
      movedTo: asideState,
    },
    'updater journal rebuilt from the release tree',
    `updater journal ${layout.stateFile} ${problem}${asideState ? ` (kept as ${asideState})` : ''}; rebuilt ` +
      `from the release tree: current ${current ?? '(none)'}, rollback target ` +
      `${previous ? `${previous.version} (${previous.how})` : '(none)'}, releases kept: ` +
      `${releases.join(', ') || '(none)'}. Lost: ${lost.join('; ')}`,
  );
  return { how: 'rebuilt', warnings };
}

async function checkHistory(o: OpenStateOptions, history: FileCondition, warn: Warn): Promise<void> {
  if (history.kind === 'ok') return;
  const { layout, store } = o;
  const hadReleases = store.state.installed.length > 0 || store.state.self.installed.length > 0;
  if (history.kind === 'missing' && !hadReleases) return;
  const problem = history.kind === 'missing' ? 'is missing' : history.problem;
  const aside = history.kind === 'damaged' ? await moveAside(layout.historyFile, o.clock()) : null;
  await store.saveHistory([]);
  warn(
    { file: layout.historyFile, problem, movedTo: aside },
    'release history lost; started empty',
    `release history ${layout.historyFile} ${problem}${aside ? ` (kept as ${aside})` : ''}; started empty. ` +
      'Lost: the release history (versions that rolled back here are no longer refused until they roll back again)',
  );
}

/** Journal entries for releases that are gone from disk are dropped, with a warning. */
async function dropVanished(o: OpenStateOptions, tree: Tree, warn: Warn): Promise<void> {
  const { store, layout } = o;
  const onDisk = new Set(tree.releases.map((r) => r.version));
  const intentTo = store.state.intent?.to;
  const gone = store.state.installed.filter((r) => !onDisk.has(r.version) && r.version !== intentTo);
  if (gone.length === 0) return;
  const versions = gone.map((r) => r.version);
  await store.update((s) => ({
    ...s,
    previous: s.previous !== null && versions.includes(s.previous) ? null : s.previous,
    installed: s.installed.filter((r) => !versions.includes(r.version)),
  }));
  warn(
    { file: layout.stateFile, versions },
    'releases in the journal are gone from disk',
    `updater journal ${layout.stateFile} lists releases that are not in ${layout.releasesDir}: ` +
      `${versions.join(', ')}; dropped from the journal`,
  );
}

async function reinitialize(
  o: OpenStateOptions,
  state: FileCondition,
  history: FileCondition,
  tree: Tree,
  problem: string,
  why: string,
  warn: Warn,
): Promise<void> {
  const { layout, store } = o;
  const now = o.clock();
  const asideState = state.kind === 'damaged' ? await moveAside(layout.stateFile, now) : null;
  const asideHistory = history.kind !== 'missing' ? await moveAside(layout.historyFile, now) : null;
  const current = tree.current.kind === 'release' ? tree.current.version : null;
  if (tree.current.kind === 'broken') await unlink(layout.currentLink);
  const kept = new Set(current === null ? [] : [current]);
  const removed = await removeReleasesExcept(layout.releasesDir, kept);
  await store.save({
    ...EMPTY_STATE,
    installed: tree.releases.filter((r) => kept.has(r.version)).map(entryOf),
    self: { installed: tree.selfReleases.map(entryOf) },
  });
  await store.saveHistory([]);
  warn(
    { file: layout.stateFile, problem, why, removed, current, movedTo: [asideState, asideHistory] },
    'updater state reinitialized',
    `--reinitialize: updater journal ${layout.stateFile} ${problem} and could not be rebuilt (${why}). ` +
      `Discarded the journal${asideState ? ` (kept as ${asideState})` : ''} and the release history` +
      `${asideHistory ? ` (kept as ${asideHistory})` : ''}` +
      `${tree.current.kind === 'broken' ? `, removed the current link` : ''}` +
      `${removed.length > 0 ? `, removed releases ${removed.join(', ')}` : ''}; the updater starts on ` +
      `${current ?? 'no release'} with no rollback target`,
  );
}

/** Why the tree cannot stand in for the journal, or undefined when it can. */
function inconsistency(tree: Tree): string | undefined {
  if (tree.current.kind === 'broken') return tree.current.why;
  if (tree.current.kind === 'none' && tree.releases.length > 0) {
    return `releases/ holds ${tree.releases.map((r) => r.version).join(', ')} but there is no current link saying which one is active`;
  }
  return undefined;
}

/**
 * The rollback target a rebuilt journal gets: where the last activation of `current` came from
 * (per the history), if that release is still on disk; else the newest other release on disk.
 */
function pickPrevious(
  history: readonly HistoryEntry[],
  current: string | null,
  releases: readonly ReleaseDir[],
): { version: string; how: string } | undefined {
  if (current === null) return undefined;
  const onDisk = new Set(releases.map((r) => r.version));
  for (let i = history.length - 1; i >= 0; i--) {
    const e = history[i];
    if (e?.version !== current || (e.outcome !== 'updated' && e.outcome !== 'rollback')) continue;
    if (e.from !== null && e.from !== current && onDisk.has(e.from)) {
      return { version: e.from, how: 'from the release history' };
    }
    break;
  }
  const newest = releases
    .filter((r) => r.version !== current)
    .sort((a, b) => b.seenAt.getTime() - a.seenAt.getTime())[0];
  return newest ? { version: newest.version, how: 'the newest other release on disk' } : undefined;
}

function entryOf(r: ReleaseDir): InstalledRelease {
  return { version: r.version, sha256: null, installedAt: r.seenAt.toISOString() };
}

async function inspectTree(layout: ReleaseLayout): Promise<Tree> {
  return {
    current: await inspectCurrent(layout),
    releases: await releaseDirs(layout.releasesDir),
    selfReleases: await releaseDirs(layout.selfReleasesDir),
  };
}

async function releaseDirs(dir: string): Promise<ReleaseDir[]> {
  const out: ReleaseDir[] = [];
  for (const version of await listReleaseDirs(dir)) {
    const st = await stat(join(dir, version));
    out.push({ version, seenAt: new Date(Math.max(st.mtimeMs, st.ctimeMs)) });
  }
  return out.sort((a, b) => a.seenAt.getTime() - b.seenAt.getTime());
}

async function inspectCurrent(layout: ReleaseLayout): Promise<CurrentLink> {
  const link = layout.currentLink;
  try {
    const st = await lstat(link);
    if (!st.isSymbolicLink()) return { kind: 'broken', why: `${link} is not a symbolic link` };
  } catch (e: unknown) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return { kind: 'none' };
    throw e;
  }
  const target = await readlink(link);
  const m = /^releases\/([^/]+)$/.exec(target);
  const version = m?.[1];
  if (version === undefined || !RELEASE_VERSION_RE.test(version)) {
    return { kind: 'broken', why: `${link} points at ${JSON.stringify(target)}, not at a release` };
  }
  const manifestPath = join(layout.releaseDir(version), RELEASE_MANIFEST_FILE);
  let text: string;
  try {
    text = await readFile(manifestPath, 'utf8');
  } catch (e: unknown) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code !== 'ENOENT' && code !== 'ENOTDIR') throw e;
    return { kind: 'broken', why: `${link} points at release ${version}, which is not on disk` };
  }
  try {
    const manifest = parseJsonWith(ReleaseManifest, text, manifestPath, MAX_RELEASE_MANIFEST_BYTES);
    if (manifest.version !== version) {
      return { kind: 'broken', why: `${manifestPath} names version ${manifest.version}, not ${version}` };
    }
  } catch (e: unknown) {
    return { kind: 'broken', why: e instanceof Error ? e.message : String(e) };
  }
  return { kind: 'release', version };
}

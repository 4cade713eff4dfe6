import { randomBytes } from 'node:crypto';
import {
  copyFile,
  link,
  lstat,
  mkdir,
  readdir,
  readFile,
  readlink,
  rename,
  rm,
  symlink,
} from 'node:fs/promises';
import { join } from 'node:path';
import { writeFileAtomic } from '../../pki/index.js';
import {
  parseJsonWith,
  RELEASE_MANIFEST_FILE,
  ReleaseManifest,
  UpdaterStateFile,
  type ReleaseManifest as Manifest,
} from '../../protocol/index.js';
import { releaseLayout, type ReleaseLayout } from '../../updater/index.js';
import { AGENT_NODE_FLAGS } from '../../agent/node-flags.js';
import { installKillPoint } from './kill-points.js';
import { CorralError, ErrorCode } from '../../protocol/errors.js';

/** Temp trees of an install that was cut short start with this; the next run removes them. */
const PARTIAL_PREFIX = '.install-';
/** Top-level entries of the running installation a release carries. */
const RELEASE_TOP = ['bin', 'dist', 'package.json'] as const;
/** Compiled tests and benchmarks stay out of a node's release. */
const SKIPPED_DIST = new Set(['test', 'bench']);

/** The manifest of the running Corral packed as release `version`: agent, updater and forwarder. */
export function releaseZeroManifest(version: string, createdBy: string): Manifest {
  const corral = '${release}/bin/corral.js';
  return {
    version,
    start: {
      command: process.execPath,
      args: [...AGENT_NODE_FLAGS, corral, 'agent', 'serve', '--state-dir', '${agentStateDir}'],
    },
    updater: { command: process.execPath, args: [corral, 'updater', 'serve'] },
    forwarder: {
      command: process.execPath,
      args: [corral, 'forwarder', 'run', '--state-dir', '${agentStateDir}'],
    },
    include: ['bin', 'dist', 'node_modules', 'package.json'],
    createdBy,
  };
}

/** Production packages of the installation (`node_modules/X` paths), from its package-lock. */
async function productionModules(root: string): Promise<string[]> {
  const lock = JSON.parse(await readFile(join(root, 'package-lock.json'), 'utf8')) as {
    packages?: Record<string, { dev?: boolean; devOptional?: boolean }>;
  };
  const top = new Set<string>();
  for (const [path, meta] of Object.entries(lock.packages ?? {})) {
    if (!path.startsWith('node_modules/') || meta.dev === true || meta.devOptional === true) continue;
    // Nested packages travel inside their parent's directory.
    const rest = path.slice('node_modules/'.length);
    if (rest.includes('/node_modules/')) continue;
    top.add(path);
  }
  return [...top].sort();
}

async function copyTree(src: string, dst: string, skip?: (name: string) => boolean): Promise<void> {
  const st = await lstat(src);
  if (st.isSymbolicLink()) {
    await symlink(await readlink(src), dst);
    return;
  }
  if (!st.isDirectory()) {
    await copyFile(src, dst);
    return;
  }
  await mkdir(dst, { recursive: true, mode: 0o755 });
  for (const name of await readdir(src)) {
    if (skip?.(name)) continue;
    await copyTree(join(src, name), join(dst, name));
  }
}

/** A copy of `src` made of hard links (releases are never modified in place, so they can share). */
async function linkTree(src: string, dst: string): Promise<void> {
  const st = await lstat(src);
  if (st.isSymbolicLink()) {
    await symlink(await readlink(src), dst);
    return;
  }
  if (!st.isDirectory()) {
    await link(src, dst);
    return;
  }
  await mkdir(dst, { recursive: true, mode: 0o755 });
  for (const name of await readdir(src)) await linkTree(join(src, name), join(dst, name));
}

const exists = (p: string): Promise<boolean> =>
  lstat(p).then(
    () => true,
    () => false /* ENOENT */,
  );

/** The version of the release at `dir`, if it is a whole one (its manifest was written last). */
export async function releaseAt(dir: string): Promise<string | undefined> {
  try {
    const text = await readFile(join(dir, RELEASE_MANIFEST_FILE), 'utf8');
    return parseJsonWith(ReleaseManifest, text, RELEASE_MANIFEST_FILE, 64 * 1024).version;
  } catch (e: unknown) {
    void e; // missing or unreadable: not a release
    return undefined;
  }
}

/** Removes the temp trees an earlier run left when it was killed; how many. */
export async function removePartials(dir: string): Promise<number> {
  let names: string[];
  try {
    names = await readdir(dir);
  } catch (e: unknown) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return 0;
    throw e;
  }
  let removed = 0;
  for (const name of names.filter((n) => n.startsWith(PARTIAL_PREFIX))) {
    await rm(join(dir, name), { recursive: true, force: true });
    removed++;
  }
  return removed;
}

export interface ReleaseZero {
  readonly version: string;
  readonly layout: ReleaseLayout;
  /** What this run did (empty: everything was in place). */
  readonly done: string[];
}

/**
 * Installs the running Corral (`root`) as release `version` under `prefix`, crash-safe and
 * idempotent: the tree is copied into a temp dir and renamed into `releases/<version>` whole
 * (its manifest written last), the updater's own copy in `self/releases/<version>` is made of
 * hard links the same way, then the updater's journal names the release as installed, and the
 * `current` links point at it. Each step is skipped when its result is already there, so a run
 * killed at any point is completed by the next one; leftover temp trees are removed first.
 * An existing journal or `current` link (a node that has been updated since) is left alone.
 */
export async function installReleaseZero(o: {
  root: string;
  prefix: string;
  version: string;
  createdBy: string;
  /**
   * An installed release of the same version to hard-link from instead of copying (a local
   * fleet's workers share one copy; releases are never changed in place).
   */
  linkFrom?: string;
  clock?: () => Date;
}): Promise<ReleaseZero> {
  const layout = releaseLayout(o.prefix);
  const done: string[] = [];
  await mkdir(layout.releasesDir, { recursive: true, mode: 0o755 });
  await mkdir(layout.selfReleasesDir, { recursive: true, mode: 0o755 });
  let partials = 0;
  for (const d of [o.prefix, join(o.prefix, 'self'), layout.releasesDir, layout.selfReleasesDir])
    partials += await removePartials(d);
  if (partials > 0) done.push(`removed ${partials} unfinished copies of an earlier run`);

  const dir = layout.releaseDir(o.version);
  if ((await releaseAt(dir)) !== o.version && o.linkFrom !== undefined) {
    if ((await releaseAt(o.linkFrom)) !== o.version)
      throw new CorralError(ErrorCode.STATE_DAMAGED, `${o.linkFrom} does not hold release ${o.version}`);
    if (await exists(dir)) await rm(dir, { recursive: true, force: true });
    const tmp = join(layout.releasesDir, `${PARTIAL_PREFIX}${randomBytes(6).toString('hex')}`);
    await linkTree(o.linkFrom, tmp);
    await rename(tmp, dir);
    done.push(`linked release ${o.version} from ${o.linkFrom} to ${dir}`);
  }
  if ((await releaseAt(dir)) !== o.version) {
    if (await exists(dir)) await rm(dir, { recursive: true, force: true });
    const tmp = join(layout.releasesDir, `${PARTIAL_PREFIX}${randomBytes(6).toString('hex')}`);
    await mkdir(tmp, { mode: 0o755 });
    for (const top of RELEASE_TOP) {
      await copyTree(
        join(o.root, top),
        join(tmp, top),
        top === 'dist' ? (n) => SKIPPED_DIST.has(n) : undefined,
      );
    }
    installKillPoint('copying');
    await mkdir(join(tmp, 'node_modules'), { mode: 0o755 });
    for (const mod of await productionModules(o.root)) {
      const target = join(tmp, mod);
      await mkdir(join(target, '..'), { recursive: true, mode: 0o755 });
      await copyTree(join(o.root, mod), target);
    }
    await writeFileAtomic(
      join(tmp, RELEASE_MANIFEST_FILE),
      `${JSON.stringify(releaseZeroManifest(o.version, o.createdBy), null, 2)}\n`,
      0o644,
    );
    await rename(tmp, dir);
    done.push(`copied the running Corral to ${dir}`);
  }
  installKillPoint('copied');
  const selfDir = layout.selfReleaseDir(o.version);
  if ((await releaseAt(selfDir)) !== o.version) {
    if (await exists(selfDir)) await rm(selfDir, { recursive: true, force: true });
    const tmp = join(layout.selfReleasesDir, `${PARTIAL_PREFIX}${randomBytes(6).toString('hex')}`);
    await linkTree(dir, tmp);
    await rename(tmp, selfDir);
    done.push(`linked the updater's own copy at ${selfDir}`);
  }

  await mkdir(layout.metaDir, { recursive: true, mode: 0o700 });
  if (!(await exists(layout.stateFile))) {
    const installedAt = (o.clock?.() ?? new Date()).toISOString();
    const entry = { version: o.version, sha256: null, installedAt };
    const state: UpdaterStateFile = {
      version: 1,
      previous: null,
      installed: [entry],
      intent: null,
      self: { installed: [entry] },
    };
    await writeFileAtomic(layout.stateFile, `${JSON.stringify(state)}\n`, 0o600);
    done.push(`wrote the updater journal ${layout.stateFile}`);
  }
  installKillPoint('journal');
  for (const link of [layout.currentLink, layout.selfCurrentLink]) {
    if (await exists(link)) continue;
    const tmp = join(link, '..', `${PARTIAL_PREFIX}link-${randomBytes(4).toString('hex')}`);
    await symlink(`releases/${o.version}`, tmp);
    await rename(tmp, link);
    done.push(`pointed ${link} at release ${o.version}`);
  }
  return { version: o.version, layout, done };
}

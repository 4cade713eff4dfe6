import { randomBytes } from 'node:crypto';
import { mkdir, readdir, readlink, rename, rm, symlink, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { ensurePrivateDir, syncDir } from '../pki/index.js';
import { CorralError, ErrorCode, RELEASE_VERSION_RE } from '../protocol/index.js';

export const STAGING_PREFIX = '.staging-';

/**
 * Where an updater keeps things under its root `R`:
 * `R/releases/<version>/`, `R/current` → `releases/<version>` (relative link), the updater's own
 * releases in `R/self/`, staging dirs `R/.staging-<id>/`, its journal and history in `R/.updater/`.
 */
export interface ReleaseLayout {
  readonly root: string;
  readonly releasesDir: string;
  readonly currentLink: string;
  readonly metaDir: string;
  readonly stateFile: string;
  readonly historyFile: string;
  /** The output of the agent and the forwarder the updater runs (their pid files: kit/pid-file.ts). */
  readonly agentLog: string;
  readonly forwarderLog: string;
  /**
   * `R/.updater/updater.pid`: a symbolic link to the pid file of the updater serving this root
   * (`STATE/run/updater.pid`), so a second updater is refused even from another state dir.
   */
  readonly updaterClaim: string;
  readonly updaterLog: string;
  readonly selfReleasesDir: string;
  readonly selfCurrentLink: string;
  releaseDir(version: string): string;
  selfReleaseDir(version: string): string;
  stagingDir(id: string): string;
}

export function releaseLayout(root: string): ReleaseLayout {
  const metaDir = join(root, '.updater');
  return {
    root,
    releasesDir: join(root, 'releases'),
    currentLink: join(root, 'current'),
    metaDir,
    stateFile: join(metaDir, 'state.json'),
    historyFile: join(metaDir, 'history.json'),
    agentLog: join(metaDir, 'agent.log'),
    forwarderLog: join(metaDir, 'forwarder.log'),
    updaterClaim: join(metaDir, 'updater.pid'),
    updaterLog: join(metaDir, 'updater.log'),
    selfReleasesDir: join(root, 'self', 'releases'),
    selfCurrentLink: join(root, 'self', 'current'),
    releaseDir: (version) => join(root, 'releases', checkedVersion(version)),
    selfReleaseDir: (version) => join(root, 'self', 'releases', checkedVersion(version)),
    stagingDir: (id) => join(root, `${STAGING_PREFIX}${id}`),
  };
}

function checkedVersion(version: string): string {
  if (!RELEASE_VERSION_RE.test(version))
    throw new CorralError(ErrorCode.VALIDATION, `not a release version: ${JSON.stringify(version)}`);
  return version;
}

export async function ensureLayout(layout: ReleaseLayout): Promise<void> {
  await mkdir(layout.root, { recursive: true, mode: 0o755 });
  await mkdir(layout.releasesDir, { recursive: true, mode: 0o755 });
  await mkdir(layout.selfReleasesDir, { recursive: true, mode: 0o755 });
  await ensurePrivateDir(layout.metaDir);
}

/** The version a `current` link points at, or null when there is none (or it is foreign). */
export async function readLinkVersion(link: string): Promise<string | null> {
  let target: string;
  try {
    target = await readlink(link);
  } catch (e: unknown) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return null;
    throw e;
  }
  const m = /^releases\/([^/]+)$/.exec(target);
  return m?.[1] !== undefined && RELEASE_VERSION_RE.test(m[1]) ? m[1] : null;
}

/**
 * Points `link` at `releases/<version>` atomically: a new link beside it, renamed over the old
 * one, then the directory is fsynced. Readers see the old target or the new one, never none.
 * `version` null removes the link.
 */
export async function swapLink(link: string, version: string | null): Promise<void> {
  const dir = join(link, '..');
  if (version === null) {
    await unlink(link).catch((e: unknown) => {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
    });
  } else {
    const tmp = join(dir, `.${randomBytes(6).toString('hex')}.link.tmp`);
    await symlink(`releases/${checkedVersion(version)}`, tmp);
    try {
      await rename(tmp, link);
    } catch (e: unknown) {
      await unlink(tmp).catch(() => undefined /* nothing to clean */);
      throw e;
    }
  }
  await syncDir(dir);
}

/** Removes every staging dir under the root; returns how many there were. */
export async function removeStagingDirs(layout: ReleaseLayout): Promise<number> {
  const names = await readdir(layout.root);
  let removed = 0;
  for (const name of names) {
    if (!name.startsWith(STAGING_PREFIX)) continue;
    await removeTree(join(layout.root, name));
    removed++;
  }
  return removed;
}

export async function removeTree(path: string): Promise<void> {
  await rm(path, { recursive: true, force: true, maxRetries: 3 });
}

/** Release directories present on disk. */
export async function listReleaseDirs(dir: string): Promise<string[]> {
  try {
    return (await readdir(dir, { withFileTypes: true }))
      .filter((e) => e.isDirectory() && RELEASE_VERSION_RE.test(e.name))
      .map((e) => e.name);
  } catch (e: unknown) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw e;
  }
}

import { readlink, symlink, unlink } from 'node:fs/promises';
import { resolve } from 'node:path';
import { CorralError, ErrorCode } from '../protocol/errors.js';
import { readPidFile } from '../kit/pid-file.js';
import { isSameProcess } from '../kit/proc.js';
import type { ReleaseLayout } from './release-layout.js';

const CLAIM_ATTEMPTS = 3;

/**
 * Claims the release root for the updater whose own pid file (already claimed, exclusively, in
 * its state dir) is `pidFile`: `R/.updater/updater.pid` becomes a symbolic link to that file,
 * created exclusively, so of two updaters starting on one root, from one state dir or two, one
 * is refused. A link to the pid file of another live updater is CORRAL_ERR_CONFLICT; a stale one
 * (its updater gone, its target missing or damaged, or not a link at all) is replaced. The
 * record itself lives only in the state dir: this link is how the root finds it.
 */
export async function claimReleaseRoot(
  layout: ReleaseLayout,
  pidFile: string,
): Promise<{ release(): Promise<void> }> {
  const target = resolve(pidFile);
  const handle = {
    async release(): Promise<void> {
      const now = await readlink(layout.updaterClaim).catch(() => undefined /* gone, or not a link */);
      if (now === target)
        await unlink(layout.updaterClaim).catch(() => undefined /* ENOENT: removed meanwhile */);
    },
  };
  for (let attempt = 0; attempt < CLAIM_ATTEMPTS; attempt++) {
    try {
      await symlink(target, layout.updaterClaim);
      return handle;
    } catch (e: unknown) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
    }
    let current: string | undefined;
    try {
      current = await readlink(layout.updaterClaim);
    } catch (e: unknown) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code !== 'EINVAL' && code !== 'ENOENT') throw e;
      current = undefined; // EINVAL: a plain file is no claim; ENOENT: a racer removed it
    }
    // Our own state dir's pid file, which this process holds: the link is ours already.
    if (current === target) return handle;
    if (current !== undefined) {
      const held = await readPidFile(current).catch(() => undefined /* missing or damaged: stale */);
      if (held?.daemon === 'updater' && held.pid !== process.pid && (await isSameProcess(held)))
        throw new CorralError(
          ErrorCode.CONFLICT,
          `another updater (pid ${held.pid}) is running on ${layout.root}`,
        );
    }
    await unlink(layout.updaterClaim).catch(() => undefined /* ENOENT: a racer removed it */);
  }
  throw new CorralError(ErrorCode.CONFLICT, `could not claim ${layout.root} for this updater`);
}

import { randomBytes } from 'node:crypto';
import { rename } from 'node:fs/promises';
import type { Logger } from 'pino';
import { CorralError, ErrorCode, RELEASE_VERSION_RE, type SelfUpdateResponse } from '../protocol/index.js';
import type { AgentRelease } from './agent-runner.js';
import type { ArchiveLimits } from './archive-rules.js';
import { releasesToKeep, removeReleasesExcept } from './prune.js';
import type { ReleaseManager, Upload } from './release-manager.js';
import { readLinkVersion, removeTree, swapLink, type ReleaseLayout } from './release-layout.js';
import { stageRelease } from './stage-release.js';
import type { StateStore } from './state-store.js';

export interface SelfUpdateOptions {
  readonly manager: ReleaseManager;
  readonly layout: ReleaseLayout;
  readonly store: StateStore;
  readonly log: Logger;
  readonly clock: () => Date;
  readonly keep: number;
  readonly maxReleaseBytes: number;
  readonly limits: ArchiveLimits;
  readonly updaterVersion: string;
}

/**
 * Installs a release as the updater's own (`self/releases/<v>`, `self/current` swapped
 * atomically) after the same checks as an agent release, and returns what to restart into.
 * The release must say how to start the updater. No automatic rollback: the controller
 * confirms that the new version answers.
 */
export function installSelfRelease(
  o: SelfUpdateOptions,
  upload: Upload,
): Promise<{ release: AgentRelease; response: SelfUpdateResponse }> {
  return o.manager.exclusive(async () => {
    const { version, sha256 } = upload.query;
    const from = RELEASE_VERSION_RE.test(o.updaterVersion) ? o.updaterVersion : null;
    const stagingDir = o.layout.stagingDir(randomBytes(8).toString('hex'));
    const dir = o.layout.selfReleaseDir(version);
    let release: AgentRelease;
    try {
      if (upload.contentLength !== undefined && upload.contentLength > o.maxReleaseBytes) {
        throw new CorralError(
          ErrorCode.PAYLOAD_TOO_LARGE,
          `release is larger than ${o.maxReleaseBytes} bytes`,
        );
      }
      const staged = await stageRelease({
        body: upload.body,
        stagingDir,
        version,
        sha256,
        maxReleaseBytes: o.maxReleaseBytes,
        limits: o.limits,
      });
      if (!staged.manifest.updater) {
        throw new CorralError(
          ErrorCode.RELEASE_REFUSED,
          `release ${version} does not say how to start the updater`,
        );
      }
      await removeTree(dir);
      await rename(staged.treeDir, dir);
      release = { version, dir, manifest: staged.manifest };
    } catch (e: unknown) {
      await o.store.record({
        time: o.clock().toISOString(),
        version,
        from,
        outcome: 'refused',
        reason: `self-update: ${e instanceof CorralError ? e.message : 'release could not be staged'}`,
      });
      throw e;
    } finally {
      await removeTree(stagingDir);
    }
    await swapLink(o.layout.selfCurrentLink, version);
    const installedAt = o.clock().toISOString();
    const state = await o.store.update((s) => ({
      ...s,
      self: {
        installed: [
          ...s.self.installed.filter((r) => r.version !== version),
          { version, sha256, installedAt },
        ],
      },
    }));
    const current = await readLinkVersion(o.layout.selfCurrentLink);
    const kept = releasesToKeep(state.self.installed, current, null, o.keep);
    await o.store.update((s) => ({
      ...s,
      self: { installed: s.self.installed.filter((r) => kept.has(r.version)) },
    }));
    await removeReleasesExcept(o.layout.selfReleasesDir, kept);
    await o.store.record({
      time: installedAt,
      version,
      from,
      outcome: 'self-updated',
      reason: 'updater restarting into this release',
    });
    o.log.info({ version, from: o.updaterVersion }, 'updater release installed; restarting into it');
    return { release, response: { outcome: 'self-updating', version, from: o.updaterVersion } };
  });
}

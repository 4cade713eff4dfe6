import { randomBytes } from 'node:crypto';
import { rename } from 'node:fs/promises';
import type { Readable } from 'node:stream';
import type { Logger } from 'pino';
import {
  CorralError,
  ErrorCode,
  isCorralError,
  type HistoryEntry,
  type InstalledRelease,
  type ReleasesResponse,
  type RollbackResponse,
  type UpdateQuery,
  type UpdateIntent,
  type UpdateResponse,
} from '../protocol/index.js';
import type { Activator } from './activator.js';
import type { AgentRunner } from './agent-runner.js';
import type { ArchiveLimits } from './archive-rules.js';
import { releasesToKeep, removeReleasesExcept } from './prune.js';
import { replacedDir, restoreReplaced } from './replaced-copy.js';
import { readLinkVersion, removeTree, type ReleaseLayout } from './release-layout.js';
import { stageRelease } from './stage-release.js';
import type { StateStore } from './state-store.js';

export interface ReleaseManagerOptions {
  readonly layout: ReleaseLayout;
  readonly store: StateStore;
  readonly runner: AgentRunner;
  readonly activator: Activator;
  readonly log: Logger;
  readonly clock: () => Date;
  /** Releases kept on disk (current and previous included); at least 2. */
  readonly keep: number;
  readonly maxReleaseBytes: number;
  readonly limits: ArchiveLimits;
  readonly updaterVersion: string;
  /** Reported in GET /v1/releases, so the controller can wait long enough for an answer. */
  readonly timing: { readonly healthTimeoutMs: number; readonly watchMs: number };
}

export interface Upload {
  readonly body: Readable;
  readonly query: UpdateQuery;
  /** The declared Content-Length, when there was one. */
  readonly contentLength: number | undefined;
}

/** Reasons cross the wire with a bounded length. */
export function clip(text: string): string {
  return text.length > MAX_REASON_CHARS ? `${text.slice(0, MAX_REASON_CHARS - 1)}…` : text;
}
const MAX_REASON_CHARS = 2000;

function busyError(): CorralError {
  return new CorralError(ErrorCode.UPDATER_BUSY, 'another update, rollback or self-update is in progress');
}

/**
 * The updater's release logic: one operation at a time (others get CORRAL_ERR_UPDATER_BUSY), each
 * journaled in `state.json` before it changes anything so a restarted updater can finish or
 * undo it (see recover.ts), and each ending in a history entry.
 */
export class ReleaseManager {
  readonly #o: ReleaseManagerOptions;
  #busy = false;

  constructor(options: ReleaseManagerOptions) {
    this.#o = options;
  }

  get busy(): boolean {
    return this.#busy;
  }

  /** Runs `fn` as the one operation in flight, with agent supervision paused meanwhile. */
  async exclusive<T>(fn: () => Promise<T>): Promise<T> {
    if (this.#busy) throw busyError();
    this.#busy = true;
    this.#o.runner.supervise(null);
    try {
      return await fn();
    } finally {
      this.#busy = false;
      await this.resumeSupervision();
    }
  }

  async resumeSupervision(): Promise<void> {
    const current = await readLinkVersion(this.#o.layout.currentLink);
    const release = current === null ? null : await this.#o.activator.loadRelease(current).catch(() => null);
    this.#o.runner.supervise(release);
  }

  async #record(entry: Omit<HistoryEntry, 'time'>): Promise<void> {
    await this.#o.store.record({
      time: this.#o.clock().toISOString(),
      ...entry,
      reason: entry.reason === null ? null : clip(entry.reason),
    });
  }

  /** Checks that happen before a single byte is read; throws CorralError. */
  async #admit(upload: Upload, from: string | null): Promise<void> {
    const { version, force } = upload.query;
    const refuse = async (code: ErrorCode, text: string): Promise<never> => {
      const reason = clip(text);
      await this.#record({ version, from, outcome: 'refused', reason, ...(force ? { forced: true } : {}) });
      throw new CorralError(code, reason);
    };
    const blocked = this.#o.store.rolledBack(version);
    if (blocked && !force) {
      await refuse(
        ErrorCode.RELEASE_REFUSED,
        `release ${version} rolled back here at ${blocked.time} (${blocked.reason ?? 'unhealthy'}); push it with force to try again`,
      );
    }
    if (upload.contentLength !== undefined && upload.contentLength > this.#o.maxReleaseBytes) {
      await refuse(ErrorCode.PAYLOAD_TOO_LARGE, `release is larger than ${this.#o.maxReleaseBytes} bytes`);
    }
  }

  /**
   * Installs and activates a pushed release, then watches it; rolls back on its own when the
   * new agent does not report the new version in time, or exits or turns unhealthy within the
   * watch period. Refusals (digest, unsafe archive, size, rolled back before, busy) throw
   * CorralError and change nothing outside the staging dir. An installed copy of the same
   * version that this push replaces is kept aside and put back unless the push ends `updated`,
   * so a rollback target is never lost to a failed re-push.
   */
  update(upload: Upload): Promise<UpdateResponse> {
    return this.exclusive(async () => {
      const started = performance.now();
      const { version, sha256 } = upload.query;
      const { layout, store } = this.#o;
      const from = await readLinkVersion(layout.currentLink);
      const done = (r: Omit<UpdateResponse, 'version' | 'durationMs'>): UpdateResponse => ({
        version,
        durationMs: Math.round(performance.now() - started),
        ...r,
        reason: r.reason === null ? null : clip(r.reason),
      });
      if (from === version) {
        const active = store.state.installed.find((r) => r.version === version);
        if (active?.sha256 && active.sha256 !== sha256) {
          throw new CorralError(
            ErrorCode.CONFLICT,
            `release ${version} is already active with different content`,
          );
        }
        return done({
          outcome: 'updated',
          current: version,
          previous: store.state.previous,
          reason: 'already active',
          agentOutput: null,
        });
      }
      await this.#admit(upload, from);

      const id = randomBytes(8).toString('hex');
      const intent: UpdateIntent = {
        id,
        kind: 'update',
        phase: 'staging',
        from,
        to: version,
        startedAt: this.#o.clock().toISOString(),
      };
      await store.update((s) => ({ ...s, intent }));
      const stagingDir = layout.stagingDir(id);
      const forced = upload.query.force ? { forced: true } : {};
      let replaced: InstalledRelease | undefined;
      try {
        const staged = await stageRelease({
          body: upload.body,
          stagingDir,
          version,
          sha256,
          maxReleaseBytes: this.#o.maxReleaseBytes,
          limits: this.#o.limits,
        });
        this.#o.log.info({ version, bytes: staged.bytes }, 'release staged');
        await removeTree(staged.uploadFile);
        await this.#o.activator.pause('staged');
        replaced = store.state.installed.find((r) => r.version === version);
        if (replaced) {
          // Journaled first: a restarted updater finds the old copy by this entry (recover.ts).
          const old = replaced;
          await store.update((s) => ({
            ...s,
            installed: s.installed.filter((r) => r.version !== version),
            intent: { ...intent, replaced: old },
          }));
          await this.#o.activator.pause('replacing');
          await rename(layout.releaseDir(version), replacedDir(stagingDir));
          await this.#o.activator.pause('set-aside');
        } else {
          await removeTree(layout.releaseDir(version));
        }
        await rename(staged.treeDir, layout.releaseDir(version));
      } catch (e: unknown) {
        await this.#putBack(version, stagingDir, replaced);
        await removeTree(stagingDir);
        await store.update((s) => ({ ...s, intent: null }));
        const reason = isCorralError(e) ? e.message : 'release could not be staged';
        await this.#record({ version, from, outcome: 'refused', reason, ...forced });
        throw e;
      }
      await store.update((s) => ({
        ...s,
        intent: { ...intent, phase: 'activating', ...(replaced ? { replaced } : {}) },
      }));

      let result = await this.#o.activator.switchTo(version, true);
      if (result.ok) {
        await store.update((s) => (s.intent ? { ...s, intent: { ...s.intent, phase: 'watching' } } : s));
        result = await this.#o.activator.watch(version, result);
      }
      if (result.ok) {
        const installed: InstalledRelease = { version, sha256, installedAt: this.#o.clock().toISOString() };
        await store.update((s) => ({
          ...s,
          previous: from,
          installed: [...s.installed.filter((r) => r.version !== version), installed],
          intent: null,
        }));
        await removeTree(stagingDir);
        await this.#record({ version, from, outcome: 'updated', reason: null, ...forced });
        await this.prune();
        this.#o.log.info({ version, from }, 'release updated');
        return done({
          outcome: 'updated',
          current: version,
          previous: from,
          reason: null,
          agentOutput: null,
        });
      }

      this.#o.log.warn({ version, from, reason: result.reason }, 'release unhealthy; rolling back');
      const back = await this.#o.activator.switchTo(from);
      await removeTree(layout.releaseDir(version));
      await this.#putBack(version, stagingDir, replaced);
      await removeTree(stagingDir);
      const keepPrevious = store.state.previous !== version || replaced !== undefined;
      const previous = keepPrevious ? store.state.previous : null;
      await store.update((s) => ({ ...s, previous, intent: null }));
      const agentOutput = result.agentOutput ?? null;
      if (back.ok) {
        await this.#record({ version, from, outcome: 'rolled-back', reason: result.reason, ...forced });
        return done({ outcome: 'rolled-back', current: from, previous, reason: result.reason, agentOutput });
      }
      const reason = `${result.reason}; the previous release ${from ?? '(none)'} did not come back either: ${back.reason}`;
      await this.#record({ version, from, outcome: 'failed', reason, ...forced });
      return done({ outcome: 'failed', current: from, previous, reason, agentOutput });
    });
  }

  /** Puts a replaced copy of `version` back in `releases/` (and in the journal), if there was one. */
  async #putBack(version: string, stagingDir: string, replaced: InstalledRelease | undefined): Promise<void> {
    if (!replaced) return;
    await restoreReplaced(this.#o.layout, this.#o.store, version, stagingDir, replaced);
  }

  /** Swaps back to the previous release (health-checked; on failure the current one returns). */
  rollback(): Promise<RollbackResponse> {
    return this.exclusive(async () => {
      const started = performance.now();
      const { layout, store } = this.#o;
      const from = await readLinkVersion(layout.currentLink);
      const to = store.state.previous;
      if (to === null || !store.state.installed.some((r) => r.version === to)) {
        throw new CorralError(ErrorCode.CONFLICT, 'there is no previous release to roll back to');
      }
      const intent = {
        id: randomBytes(8).toString('hex'),
        kind: 'rollback' as const,
        phase: 'activating' as const,
        from,
        to,
        startedAt: this.#o.clock().toISOString(),
      };
      await store.update((s) => ({ ...s, intent }));
      const result = await this.#o.activator.switchTo(to);
      const durationMs = (): number => Math.round(performance.now() - started);
      if (result.ok) {
        await store.update((s) => ({ ...s, previous: from, intent: null }));
        await this.#record({ version: to, from, outcome: 'rollback', reason: 'rollback requested' });
        return {
          outcome: 'rolled-back',
          current: to,
          previous: from,
          reason: null,
          agentOutput: null,
          durationMs: durationMs(),
        };
      }
      const back = await this.#o.activator.switchTo(from);
      await store.update((s) => ({ ...s, intent: null }));
      const reason = clip(
        back.ok
          ? result.reason
          : `${result.reason}; ${from ?? '(none)'} did not come back either: ${back.reason}`,
      );
      await this.#record({ version: to, from, outcome: 'failed', reason });
      return {
        outcome: 'failed',
        current: from,
        previous: to,
        reason,
        agentOutput: result.agentOutput ?? null,
        durationMs: durationMs(),
      };
    });
  }

  /** Removes releases beyond the newest `keep` (never the current or previous one). */
  async prune(): Promise<void> {
    const { layout, store, keep } = this.#o;
    const current = await readLinkVersion(layout.currentLink);
    const kept = releasesToKeep(store.state.installed, current, store.state.previous, keep);
    await store.update((s) => ({ ...s, installed: s.installed.filter((r) => kept.has(r.version)) }));
    const removed = await removeReleasesExcept(layout.releasesDir, kept);
    if (removed.length > 0) this.#o.log.info({ removed }, 'old releases removed');
  }

  async releases(): Promise<ReleasesResponse> {
    const { store } = this.#o;
    const current = await readLinkVersion(this.#o.layout.currentLink);
    return {
      current,
      previous: store.state.previous,
      releases: store.state.installed.map((r) => ({ ...r, active: r.version === current })),
      history: [...store.history],
      updater: { version: this.#o.updaterVersion, pid: process.pid },
      busy: this.#busy,
      timing: { ...this.#o.timing },
    };
  }
}

import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Logger } from 'pino';
import {
  MAX_RELEASE_MANIFEST_BYTES,
  parseJsonWith,
  RELEASE_MANIFEST_FILE,
  ReleaseManifest,
} from '../protocol/index.js';
import type { AgentRelease, AgentRunner } from './agent-runner.js';
import { probeOnce, waitHealthy, type ProbeResult } from './health-probe.js';
import { swapLink, type ReleaseLayout } from './release-layout.js';

/**
 * Points in an update where a test can hold the updater (to kill it there). `replacing` and
 * `set-aside` come only when the update replaces an installed copy of its version: journaled
 * but not moved yet, and moved aside with the new tree not yet in its place.
 */
export const PAUSE_PHASES = ['staged', 'replacing', 'set-aside', 'swapped', 'agent-started'] as const;
export type PausePhase = (typeof PAUSE_PHASES)[number];

export interface ActivatorOptions {
  readonly layout: ReleaseLayout;
  readonly runner: AgentRunner;
  /** The agent's local health socket. */
  readonly healthSocket: string;
  readonly healthTimeoutMs: number;
  readonly healthIntervalMs: number;
  /** How long a new release is watched after it reported healthy (0: not at all), in ms. */
  readonly watchMs: number;
  readonly log: Logger;
  /** Test hook: resolves when the update may go on past `phase`. */
  readonly pause?: (phase: PausePhase) => Promise<void>;
  readonly signal: AbortSignal;
}

export type SwitchResult = ProbeResult & { readonly agentOutput?: string };

/** During the watch, health may fail for this long in a row before the release is called unhealthy, in ms. */
export const WATCH_UNHEALTHY_GRACE_MS = 2000;

function seconds(ms: number): string {
  return `${(ms / 1000).toFixed(1)} s`;
}

/**
 * Makes a release the active one: swaps `current` (atomically), restarts the agent from it and
 * waits until the agent reports that release's version. `null` removes `current` and stops the
 * agent (the state before any release was installed).
 */
export class Activator {
  readonly #o: ActivatorOptions;

  constructor(options: ActivatorOptions) {
    this.#o = options;
  }

  async pause(phase: PausePhase): Promise<void> {
    await this.#o.pause?.(phase);
  }

  async loadRelease(version: string): Promise<AgentRelease> {
    const dir = this.#o.layout.releaseDir(version);
    const text = await readFile(join(dir, RELEASE_MANIFEST_FILE), 'utf8');
    const manifest = parseJsonWith(
      ReleaseManifest,
      text,
      `${version}/${RELEASE_MANIFEST_FILE}`,
      MAX_RELEASE_MANIFEST_BYTES,
    );
    return { version, dir, manifest };
  }

  /**
   * `hold`: honor the test pause hook (only the forward swap of an update does). A failure to
   * start becomes a failed result (the caller rolls back), except while shutting down.
   */
  async switchTo(version: string | null, hold = false): Promise<SwitchResult> {
    await swapLink(this.#o.layout.currentLink, version);
    this.#o.log.info({ version }, 'current release swapped');
    if (version === null) {
      await this.#o.runner.stop();
      return { ok: true, health: { version: 'none', pid: process.pid, uptimeSeconds: 0 } };
    }
    try {
      if (hold) await this.pause('swapped');
      const release = await this.loadRelease(version);
      return await this.start(release, hold);
    } catch (e: unknown) {
      // Shutting down: leave the journal as it is; the next start finishes the job.
      if (this.#o.signal.aborted) throw e;
      this.#o.log.error({ version, err: e }, 'release could not be started');
      return {
        ok: false,
        reason: `release ${version} could not be started: ${e instanceof Error ? e.message : String(e)}`,
      };
    }
  }

  /**
   * Watches the agent of `version` for `watchMs` after it reported healthy: it fails at once
   * when the agent exits, and when health answers wrong or not at all for
   * WATCH_UNHEALTHY_GRACE_MS in a row; at the end the last answer must be healthy. Supervision
   * is paused meanwhile (the caller holds the operation lock), so a crash is never hidden by a
   * restart.
   */
  async watch(version: string, confirmed: ProbeResult & { ok: true }): Promise<SwitchResult> {
    const { watchMs, healthIntervalMs, runner, healthSocket, signal } = this.#o;
    const started = performance.now();
    const deadline = started + watchMs;
    let badSince: number | undefined;
    let good = confirmed;
    const fail = async (reason: string): Promise<SwitchResult> => ({
      ok: false,
      reason: `${reason}, ${seconds(performance.now() - started)} after it reported healthy (watch ${seconds(watchMs)})`,
      agentOutput: await runner.lastOutput(),
    });
    for (;;) {
      const left = deadline - performance.now();
      if (left <= 0 && badSince === undefined) return good;
      await sleep(left > 0 ? Math.min(healthIntervalMs, left) : healthIntervalMs, undefined, { signal });
      const died = runner.exitReason();
      if (died !== undefined) return fail(`release ${version}: ${died}`);
      const probe = await probeOnce(healthSocket, signal);
      if (probe.ok && probe.health.version === version) {
        badSince = undefined;
        good = probe;
        continue;
      }
      badSince ??= performance.now();
      const badMs = performance.now() - badSince;
      if (badMs >= WATCH_UNHEALTHY_GRACE_MS) {
        const why = probe.ok ? `agent reports version ${probe.health.version}` : probe.reason;
        return fail(`release ${version}: health failed for ${seconds(badMs)} (${why})`);
      }
    }
  }

  /** Restarts the agent from `release` and waits for it to report that version. */
  async start(release: AgentRelease, hold = false): Promise<SwitchResult> {
    await this.#o.runner.restart(release);
    if (hold) await this.pause('agent-started');
    const result = await waitHealthy({
      socketPath: this.#o.healthSocket,
      version: release.version,
      timeoutMs: this.#o.healthTimeoutMs,
      intervalMs: this.#o.healthIntervalMs,
      dead: () => this.#o.runner.exitReason(),
      signal: this.#o.signal,
    });
    if (result.ok) return result;
    return { ...result, agentOutput: await this.#o.runner.lastOutput() };
  }
}

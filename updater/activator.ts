import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from 'pino';
import {
  MAX_RELEASE_MANIFEST_BYTES,
  parseJsonWith,
  RELEASE_MANIFEST_FILE,
  ReleaseManifest,
} from '../protocol/index.js';
import type { AgentRelease, AgentRunner } from './agent-runner.js';
import { waitHealthy, type ProbeResult } from './health-probe.js';
import { swapLink, type ReleaseLayout } from './release-layout.js';

/** Points in an update where a test can hold the updater (to kill it there). */
export const PAUSE_PHASES = ['staged', 'swapped', 'agent-started'] as const;
export type PausePhase = (typeof PAUSE_PHASES)[number];

export interface ActivatorOptions {
  readonly layout: ReleaseLayout;
  readonly runner: AgentRunner;
  /** The agent's local health socket. */
  readonly healthSocket: string;
  readonly healthTimeoutMs: number;
  readonly healthIntervalMs: number;
  readonly log: Logger;
  /** Test hook: resolves when the update may go on past `phase`. */
  readonly pause?: (phase: PausePhase) => Promise<void>;
  readonly signal: AbortSignal;
}

export type SwitchResult = ProbeResult & { readonly agentOutput?: string };

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

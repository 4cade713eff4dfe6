import type { ReleaseManifest } from '../protocol/index.js';

/** A release as the runner starts it: its directory (the agent's cwd) and manifest. */
export interface AgentRelease {
  readonly version: string;
  readonly dir: string;
  readonly manifest: ReleaseManifest;
}

/**
 * How the updater starts and stops the worker's agent: a child process it supervises
 * (ProcessAgentRunner, the default) or an operator-configured command such as
 * `systemctl restart corral-agent` (CommandAgentRunner). Calls are serialized by the runner.
 */
export interface AgentRunner {
  /** Stops whatever agent runs, then starts the one of `release`. Resolves once started. */
  restart(release: AgentRelease): Promise<void>;
  /**
   * At startup: takes over an agent started by an earlier updater process, if it still runs,
   * so that `stop`/`restart` reach it. Resolves with its version, or null when there is none
   * or the runner cannot tell; the caller probes its health either way.
   */
  adopt(): Promise<string | null>;
  /** Stops the agent, if any. */
  stop(): Promise<void>;
  /** Why the agent is known to be down since its last start (exit code, failed command), if so. */
  exitReason(): string | undefined;
  /** The tail of the agent's output since its last start, bounded. */
  lastOutput(): Promise<string>;
  /** Keep `release` running (restart on crash, with backoff); null pauses supervision. */
  supervise(release: AgentRelease | null): void;
  /** Stops supervising; stops the agent too unless `keepAgent` (handing over to a new updater). */
  close(options?: { keepAgent?: boolean }): Promise<void>;
}

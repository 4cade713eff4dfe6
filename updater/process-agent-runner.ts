import type { Logger } from 'pino';
import { AGENT_INSTANCE_ENV, FORWARDER_INSTANCE_ENV } from '../protocol/pid-file.js';
import type { AgentRelease, AgentRunner } from './agent-runner.js';
import { MAX_CHILD_LOG_BYTES, SupervisedChild } from './supervised-child.js';

export { AGENT_INSTANCE_ENV, FORWARDER_INSTANCE_ENV } from '../protocol/pid-file.js';
/** The agent's log is copied aside and truncated past this size, in bytes. */
export const MAX_AGENT_LOG_BYTES = MAX_CHILD_LOG_BYTES;

type StartCommand = { command: string; args: string[] };

export interface ProcessAgentRunnerOptions {
  /**
   * The agent's state dir: the agent's and the forwarder's pid files are `STATE/run/agent.pid`
   * and `STATE/run/forwarder.pid` (kit/pid-file.ts), how a restarted updater finds them again.
   */
  readonly stateDir: string;
  /** The agent's stdout and stderr go here (appended; rotated at MAX_AGENT_LOG_BYTES). */
  readonly logFile: string;
  /** Resolves the release's start command (placeholders expanded). */
  readonly command: (release: AgentRelease) => StartCommand;
  /**
   * The forwarder, run beside the agent from the same release when the release names one:
   * its log file and start command (null when the release has none).
   */
  readonly forwarder?: {
    readonly logFile: string;
    readonly command: (release: AgentRelease) => StartCommand | null;
  };
  /** Base environment for the agent (the CLI passes its own). */
  readonly env: Readonly<Record<string, string | undefined>>;
  readonly log: Logger;
  /** SIGTERM, then SIGKILL after this long, in ms. */
  readonly stopTimeoutMs?: number;
  readonly superviseIntervalMs?: number;
  readonly restartBaseMs?: number;
  readonly restartCapMs?: number;
  /** Failed starts in a row before a child is given up on (until the next release). */
  readonly maxStartAttempts?: number;
}

/**
 * Without a service manager the updater is the root of the worker's supervision tree: it runs
 * the agent and the forwarder of the current release as its children (each in its own process
 * group, so they outlive a crashed or self-updating updater, which adopts them again through
 * their pid files `STATE/run/agent.pid` and `forwarder.pid` and an instance token in their
 * environment),
 * restarts them with backoff when they die, and gives up on one that keeps failing. Health and
 * rollback decisions concern the agent alone; the forwarder follows the agent's release.
 */
export class ProcessAgentRunner implements AgentRunner {
  readonly #agent: SupervisedChild;
  readonly #forwarder: SupervisedChild | undefined;

  constructor(o: ProcessAgentRunnerOptions) {
    const common = {
      env: o.env,
      ...(o.stopTimeoutMs !== undefined ? { stopTimeoutMs: o.stopTimeoutMs } : {}),
      ...(o.superviseIntervalMs !== undefined ? { superviseIntervalMs: o.superviseIntervalMs } : {}),
      ...(o.restartBaseMs !== undefined ? { restartBaseMs: o.restartBaseMs } : {}),
      ...(o.restartCapMs !== undefined ? { restartCapMs: o.restartCapMs } : {}),
      ...(o.maxStartAttempts !== undefined ? { maxStartAttempts: o.maxStartAttempts } : {}),
    };
    this.#agent = new SupervisedChild({
      ...common,
      name: 'agent',
      stateDir: o.stateDir,
      logFile: o.logFile,
      instanceEnv: AGENT_INSTANCE_ENV,
      command: o.command,
      log: o.log,
    });
    this.#forwarder = o.forwarder
      ? new SupervisedChild({
          ...common,
          name: 'forwarder',
          stateDir: o.stateDir,
          logFile: o.forwarder.logFile,
          instanceEnv: FORWARDER_INSTANCE_ENV,
          command: o.forwarder.command,
          log: o.log.child({ component: 'forwarder' }),
        })
      : undefined;
  }

  async restart(release: AgentRelease): Promise<void> {
    await this.#agent.restart(release);
    if (this.#forwarder) {
      await this.#forwarder.restart(release);
      this.#forwarder.supervise(release);
    }
  }

  async adopt(): Promise<string | null> {
    await this.#forwarder?.adopt();
    return this.#agent.adopt();
  }

  stop(): Promise<void> {
    return this.#agent.stop();
  }

  exitReason(): string | undefined {
    return this.#agent.exitReason();
  }

  lastOutput(): Promise<string> {
    return this.#agent.lastOutput();
  }

  supervise(release: AgentRelease | null): void {
    this.#agent.supervise(release);
    // The forwarder keeps running through a watch (null) and follows each supervised release.
    if (release && this.#forwarder) this.#forwarder.supervise(release);
  }

  /** The children running now, by name: for status and for tests. */
  children(): Record<string, { pid: number; version: string } | undefined> {
    return { agent: this.#agent.current(), forwarder: this.#forwarder?.current() };
  }

  async close(options: { keepAgent?: boolean } = {}): Promise<void> {
    const keepChild = options.keepAgent === true;
    await Promise.all([this.#agent.close({ keepChild }), this.#forwarder?.close({ keepChild })]);
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }
}

import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { copyFile, open, readFile, stat, truncate, unlink } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Logger } from 'pino';
import { writeFileAtomic } from '../pki/index.js';
import {
  AgentProcessFile,
  MAX_AGENT_OUTPUT_BYTES,
  parseJsonWith,
  RELEASE_VERSION_ENV,
} from '../protocol/index.js';
import { backoffDelayMs } from '../kit/backoff.js';
import type { AgentRelease, AgentRunner } from './agent-runner.js';
import { isAlive, signalProcess, waitGone } from '../kit/proc.js';
import { SingleFlight } from '../kit/single-flight.js';
import { hasEnvToken, tailFile } from './process-tools.js';

const AGENT_RUNNER_MAX_QUEUED = 64;

/** Environment variable carrying the token that ties an agent process to this updater. */
export const AGENT_INSTANCE_ENV = 'CORRAL_AGENT_INSTANCE';
/** The agent's log is copied aside and truncated past this size, in bytes. */
export const MAX_AGENT_LOG_BYTES = 16 * 1024 * 1024;

export interface ProcessAgentRunnerOptions {
  /** `ROOT/.updater/agent.json`: the running agent's pid, for a restarted updater. */
  readonly processFile: string;
  /** The agent's stdout and stderr go here (appended; rotated at MAX_AGENT_LOG_BYTES). */
  readonly logFile: string;
  /** Resolves the release's start command (placeholders expanded). */
  readonly command: (release: AgentRelease) => { command: string; args: string[] };
  /** Base environment for the agent (the CLI passes its own). */
  readonly env: Readonly<Record<string, string | undefined>>;
  readonly log: Logger;
  readonly clock?: () => Date;
  /** SIGTERM, then SIGKILL after this long, in ms. */
  readonly stopTimeoutMs?: number;
  readonly superviseIntervalMs?: number;
  readonly restartBaseMs?: number;
  readonly restartCapMs?: number;
}

interface Running {
  readonly pid: number;
  readonly instance: string;
  readonly version: string;
  readonly child: ChildProcess | undefined;
  readonly startedMs: number;
  readonly logOffset: number;
  exit: string | undefined;
}

/**
 * Runs the agent as a child process in its own process group (so it outlives a crashed or
 * self-updating updater, which finds it again through `agent.json` and an instance token in its
 * environment), with output in a log file, and restarts it with backoff when it dies while
 * supervised.
 */
export class ProcessAgentRunner implements AgentRunner {
  readonly #o: ProcessAgentRunnerOptions;
  /** Start, stop and restart one at a time; the updater never has more than a few waiting. */
  readonly #serial = new SingleFlight({ name: 'agent runner', maxQueued: AGENT_RUNNER_MAX_QUEUED });
  readonly #loop = new AbortController();
  #running: Running | undefined;
  #supervised: AgentRelease | null = null;
  /** Bumped by every supervise() call, so a pending revival notices it is stale. */
  #generation = 0;
  #attempt = 0;
  #closing: Promise<void> | undefined;
  readonly #loopDone: Promise<void>;

  constructor(options: ProcessAgentRunnerOptions) {
    this.#o = options;
    this.#loopDone = this.#superviseLoop(this.#loop.signal);
  }

  restart(release: AgentRelease): Promise<void> {
    return this.#serial.run(async () => {
      await this.#stopNow();
      await this.#start(release);
    });
  }

  adopt(): Promise<string | null> {
    return this.#serial.run(async () => {
      if (this.#running) return this.#running.version;
      const found = await this.#readProcessFile();
      if (!found) return null;
      if (
        !(await isAlive(found.pid)) ||
        !(await hasEnvToken(found.pid, AGENT_INSTANCE_ENV, found.instance))
      ) {
        await unlink(this.#o.processFile).catch(() => undefined /* already gone */);
        return null;
      }
      const size = await stat(this.#o.logFile).then(
        (s) => s.size,
        () => 0,
      );
      this.#running = {
        pid: found.pid,
        instance: found.instance,
        version: found.version,
        child: undefined,
        startedMs: performance.now(),
        logOffset: size,
        exit: undefined,
      };
      this.#o.log.info({ pid: found.pid, version: found.version }, 'agent adopted');
      return found.version;
    });
  }

  stop(): Promise<void> {
    return this.#serial.run(() => this.#stopNow());
  }

  exitReason(): string | undefined {
    return this.#running ? this.#running.exit : 'agent is not running';
  }

  async lastOutput(): Promise<string> {
    return tailFile(this.#o.logFile, this.#running?.logOffset ?? 0, MAX_AGENT_OUTPUT_BYTES);
  }

  supervise(release: AgentRelease | null): void {
    this.#supervised = release;
    this.#generation++;
    this.#attempt = 0;
  }

  /** Stops supervising and (unless `keepAgent`) the agent; a second call waits for the first. */
  close(options: { keepAgent?: boolean } = {}): Promise<void> {
    this.#closing ??= this.#close(options);
    return this.#closing;
  }

  async #close(options: { keepAgent?: boolean }): Promise<void> {
    this.#supervised = null;
    this.#loop.abort();
    await this.#loopDone;
    await this.#serial.run(async () => {
      if (!options.keepAgent) await this.#stopNow();
      else this.#running?.child?.unref();
    });
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }

  async #readProcessFile(): Promise<AgentProcessFile | undefined> {
    let text: string;
    try {
      text = await readFile(this.#o.processFile, 'utf8');
    } catch (e: unknown) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw e;
    }
    try {
      return parseJsonWith(AgentProcessFile, text, 'agent process file', 4096);
    } catch (e: unknown) {
      this.#o.log.warn({ err: e, file: this.#o.processFile }, 'agent process file unreadable; ignoring it');
      return undefined;
    }
  }

  async #start(release: AgentRelease): Promise<void> {
    const { command, args } = this.#o.command(release);
    const instance = randomBytes(16).toString('hex');
    const logOffset = await stat(this.#o.logFile).then(
      (s) => s.size,
      () => 0,
    );
    const fh = await open(this.#o.logFile, 'a', 0o600);
    let child: ChildProcess;
    try {
      child = spawn(command, args, {
        cwd: release.dir,
        detached: true,
        stdio: ['ignore', fh.fd, fh.fd],
        env: { ...this.#o.env, [RELEASE_VERSION_ENV]: release.version, [AGENT_INSTANCE_ENV]: instance },
      });
    } finally {
      await fh.close();
    }
    const running: Running = {
      pid: child.pid ?? 0,
      instance,
      version: release.version,
      child,
      startedMs: performance.now(),
      logOffset,
      exit: undefined,
    };
    child.once('error', (e: Error) => {
      running.exit = `agent could not be started: ${e.message}`;
    });
    child.once('exit', (code, signal) => {
      running.exit = signal ? `agent was killed by ${signal}` : `agent exited with code ${code ?? 'unknown'}`;
      this.#o.log.warn({ pid: running.pid, version: running.version, code, signal }, 'agent exited');
    });
    this.#running = running;
    if (child.pid === undefined) {
      running.exit ??= `agent could not be started: ${command}`;
      return;
    }
    const record: AgentProcessFile = {
      pid: child.pid,
      version: release.version,
      instance,
      startedAt: (this.#o.clock?.() ?? new Date()).toISOString(),
    };
    await writeFileAtomic(this.#o.processFile, `${JSON.stringify(record)}\n`, 0o600);
    this.#o.log.info({ pid: child.pid, version: release.version }, 'agent started');
  }

  async #stopNow(): Promise<void> {
    const running = this.#running;
    this.#running = undefined;
    if (running && running.exit === undefined && running.pid > 0) {
      const ours =
        running.child !== undefined || (await hasEnvToken(running.pid, AGENT_INSTANCE_ENV, running.instance));
      if (ours && signalProcess(running.pid, 'SIGTERM')) {
        if (!(await waitGone(running.pid, this.#o.stopTimeoutMs ?? 10_000))) {
          this.#o.log.warn({ pid: running.pid }, 'agent ignored SIGTERM; killing it');
          signalProcess(running.pid, 'SIGKILL');
          await waitGone(running.pid, 5000);
        }
      }
      this.#o.log.info({ pid: running.pid, version: running.version }, 'agent stopped');
    }
    await unlink(this.#o.processFile).catch(() => undefined /* none was written */);
  }

  async #superviseLoop(signal: AbortSignal): Promise<void> {
    const interval = this.#o.superviseIntervalMs ?? 1000;
    while (!signal.aborted) {
      try {
        await sleep(interval, undefined, { signal });
        await this.#rotateLog();
        await this.#reviveIfDead(signal);
      } catch (e: unknown) {
        if (signal.aborted) break;
        this.#o.log.error({ err: e }, 'agent supervision step failed');
      }
    }
  }

  async #reviveIfDead(signal: AbortSignal): Promise<void> {
    const release = this.#supervised;
    const generation = this.#generation;
    const running = this.#running;
    if (!release) return;
    if (
      running &&
      running.exit === undefined &&
      running.child === undefined &&
      !(await isAlive(running.pid))
    ) {
      running.exit = 'adopted agent is gone';
    }
    if (running && running.exit === undefined) {
      if (performance.now() - running.startedMs > 60_000) this.#attempt = 0;
      return;
    }
    const delay = backoffDelayMs(
      this.#attempt++,
      this.#o.restartBaseMs ?? 500,
      this.#o.restartCapMs ?? 30_000,
    );
    this.#o.log.warn(
      { version: release.version, delayMs: delay, attempt: this.#attempt },
      'agent down; restarting',
    );
    await sleep(delay, undefined, { signal });
    await this.#serial.run(async () => {
      // Checked inside the serial section: an operation that took over meanwhile wins.
      if (this.#generation !== generation || this.#running !== running) return;
      await this.#stopNow();
      await this.#start(release);
    });
  }

  async #rotateLog(): Promise<void> {
    const size = await stat(this.#o.logFile).then(
      (s) => s.size,
      () => 0,
    );
    if (size <= MAX_AGENT_LOG_BYTES) return;
    await copyFile(this.#o.logFile, `${this.#o.logFile}.1`);
    await truncate(this.#o.logFile, 0);
  }
}

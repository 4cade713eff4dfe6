import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { copyFile, open, stat, truncate } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Logger } from 'pino';
import { MAX_AGENT_OUTPUT_BYTES, RELEASE_VERSION_ENV, RELEASE_VERSION_RE } from '../protocol/index.js';
import type { PidFileDaemon } from '../protocol/pid-file.js';
import type { AgentRelease } from './agent-runner.js';
import { backoffDelayMs } from '../kit/backoff.js';
import { claimPidFile, pidFilePath, readPidFile, removePidFileOf } from '../kit/pid-file.js';
import {
  environValue,
  identityOf,
  isSameProcess,
  readEnviron,
  signalProcess,
  waitGone,
  type ProcessIdentity,
} from '../kit/proc.js';
import { SingleFlight } from '../kit/single-flight.js';
import { hasEnvToken, tailFile } from './process-tools.js';

/** Starts, stops and restarts waiting their turn: the updater never has more than a few. */
const CHILD_MAX_QUEUED = 64;

/** A child's log is copied aside (`.1`) and truncated past this size, in bytes. */
export const MAX_CHILD_LOG_BYTES = 16 * 1024 * 1024;
/** Restarts in a row (none of them lasting a minute) before supervision gives up. */
export const DEFAULT_MAX_START_ATTEMPTS = 10;
/** A child that ran this long counts as started well: its restart count starts over, in ms. */
const STABLE_RUN_MS = 60_000;

export interface SupervisedChildOptions {
  /** `agent` or `forwarder`: in log lines, exit reasons and the pid file's name. */
  readonly name: Extract<PidFileDaemon, 'agent' | 'forwarder'>;
  /**
   * The child's state dir: its pid file is `STATE/run/<name>.pid` (kit/pid-file.ts), written
   * here right after the spawn and by the child itself, read by a restarted updater to adopt it
   * and by the reaper to stop it.
   */
  readonly stateDir: string;
  /** stdout and stderr go here (appended; rotated at MAX_CHILD_LOG_BYTES). */
  readonly logFile: string;
  /** Environment variable carrying the token that ties the process to this updater. */
  readonly instanceEnv: string;
  /** The release's start command for this child (placeholders expanded); null: it has none. */
  readonly command: (release: AgentRelease) => { command: string; args: string[] } | null;
  readonly env: Readonly<Record<string, string | undefined>>;
  readonly log: Logger;
  /** SIGTERM, then SIGKILL after this long, in ms. */
  readonly stopTimeoutMs?: number;
  readonly superviseIntervalMs?: number;
  readonly restartBaseMs?: number;
  readonly restartCapMs?: number;
  readonly maxStartAttempts?: number;
}

interface Running {
  readonly pid: number;
  /** pid + start time + boot id, once read from /proc (never for a start that failed). */
  identity: ProcessIdentity | undefined;
  readonly instance: string;
  readonly version: string;
  readonly child: ChildProcess | undefined;
  readonly startedMs: number;
  readonly logOffset: number;
  exit: string | undefined;
}

/**
 * One daemon the updater runs from a release: started detached in its own process group (so it
 * outlives a crashed or self-updating updater, which finds it again through its process file and
 * an instance token in its environment), output appended to a log file, restarted with backoff
 * while supervised. Never throws for a child that cannot start (missing binary, release dir or
 * log dir): it records why, backs off, and after `maxStartAttempts` failures in a row stops
 * trying until the next `supervise`/`restart`, saying so once in the log.
 */
export class SupervisedChild {
  readonly #o: SupervisedChildOptions;
  readonly #serial: SingleFlight;
  readonly #loop = new AbortController();
  #running: Running | undefined;
  #supervised: AgentRelease | null = null;
  /** Bumped by every supervise() call, so a pending revival notices it is stale. */
  #generation = 0;
  #attempt = 0;
  #closing: Promise<void> | undefined;
  readonly #loopDone: Promise<void>;

  constructor(options: SupervisedChildOptions) {
    this.#o = options;
    this.#serial = new SingleFlight({ name: options.name, maxQueued: CHILD_MAX_QUEUED });
    this.#loopDone = this.#superviseLoop(this.#loop.signal);
  }

  /** Stops whatever runs, then starts the child of `release` (if the release has one). */
  restart(release: AgentRelease): Promise<void> {
    return this.#serial.run(async () => {
      await this.#stopNow();
      await this.#start(release);
    });
  }

  /**
   * Takes over a child an earlier updater started, if it still runs; its version, else null.
   * Found by its pid file (the process it names still the same one), and taken only when the
   * instance token of an updater is in that process's environment (the one the file records,
   * when it records one), so never a hand-started daemon; the version is the file's, else the
   * one its updater put in its environment.
   */
  adopt(): Promise<string | null> {
    return this.#serial.run(async () => {
      if (this.#running) return this.#running.version;
      const found = await this.#findAdoptable();
      if (!found) return null;
      this.#running = {
        ...found,
        child: undefined,
        startedMs: performance.now(),
        logOffset: await sizeOf(this.#o.logFile),
        exit: undefined,
      };
      this.#o.log.info({ pid: found.pid, version: found.version }, `${this.#o.name} adopted`);
      return found.version;
    });
  }

  async #findAdoptable(): Promise<
    { pid: number; identity: ProcessIdentity; instance: string; version: string } | undefined
  > {
    let record;
    try {
      record = await readPidFile(this.#pidFile);
    } catch (e: unknown) {
      this.#o.log.warn({ err: e, file: this.#pidFile }, `${this.#o.name} pid file unreadable; ignoring it`);
      return undefined;
    }
    if (!record || record.daemon !== this.#o.name || !(await isSameProcess(record))) return undefined;
    const environ = await readEnviron(record.pid);
    const token = environ ? environValue(environ, this.#o.instanceEnv) : undefined;
    if (token === undefined || (record.instance !== undefined && record.instance !== token)) return undefined;
    const version = record.version ?? (environ ? environValue(environ, RELEASE_VERSION_ENV) : undefined);
    if (version === undefined || !RELEASE_VERSION_RE.test(version)) return undefined;
    const identity = { pid: record.pid, startTime: record.startTime, bootId: record.bootId };
    return { pid: record.pid, identity, instance: token, version };
  }

  get #pidFile(): string {
    return pidFilePath(this.#o.stateDir, this.#o.name);
  }

  stop(): Promise<void> {
    return this.#serial.run(() => this.#stopNow());
  }

  /** The running child's pid and version, if one runs. */
  current(): { pid: number; version: string } | undefined {
    const r = this.#running;
    return r && r.exit === undefined ? { pid: r.pid, version: r.version } : undefined;
  }

  exitReason(): string | undefined {
    return this.#running ? this.#running.exit : `${this.#o.name} is not running`;
  }

  async lastOutput(): Promise<string> {
    return tailFile(this.#o.logFile, this.#running?.logOffset ?? 0, MAX_AGENT_OUTPUT_BYTES).catch(
      (e: unknown) => `(${this.#o.name} log unreadable: ${e instanceof Error ? e.message : String(e)})`,
    );
  }

  supervise(release: AgentRelease | null): void {
    this.#supervised = release;
    this.#generation++;
    this.#attempt = 0;
  }

  /** Stops supervising and (unless `keepChild`) the child; a second call waits for the first. */
  close(options: { keepChild?: boolean } = {}): Promise<void> {
    this.#closing ??= this.#close(options);
    return this.#closing;
  }

  async #close(options: { keepChild?: boolean }): Promise<void> {
    this.#supervised = null;
    this.#loop.abort();
    await this.#loopDone;
    await this.#serial.run(async () => {
      if (!options.keepChild) await this.#stopNow();
      else this.#running?.child?.unref();
    });
  }

  async #start(release: AgentRelease): Promise<void> {
    let spec: { command: string; args: string[] } | null;
    try {
      spec = this.#o.command(release);
    } catch (e: unknown) {
      this.#failedStart(release, `bad start command: ${e instanceof Error ? e.message : String(e)}`);
      return;
    }
    if (spec === null) return;
    const instance = randomBytes(16).toString('hex');
    const logOffset = await sizeOf(this.#o.logFile);
    let child: ChildProcess;
    // Set before the first await: spawn reports ENOENT (missing binary or cwd) on the next
    // tick, and an 'error' with no listener would end the updater.
    let spawnError: Error | undefined;
    let onError: (e: Error) => void = (e) => (spawnError = e);
    try {
      const fh = await open(this.#o.logFile, 'a', 0o600);
      try {
        child = spawn(spec.command, spec.args, {
          cwd: release.dir,
          detached: true,
          stdio: ['ignore', fh.fd, fh.fd],
          env: { ...this.#o.env, [RELEASE_VERSION_ENV]: release.version, [this.#o.instanceEnv]: instance },
        });
        child.on('error', (e: Error) => onError(e));
      } finally {
        await fh.close();
      }
    } catch (e: unknown) {
      // ENOENT log dir (the root was removed), EMFILE, …: recorded, retried with backoff.
      this.#failedStart(release, e instanceof Error ? e.message : String(e));
      return;
    }
    const running: Running = {
      pid: child.pid ?? 0,
      identity: undefined,
      instance,
      version: release.version,
      child,
      startedMs: performance.now(),
      logOffset,
      exit: undefined,
    };
    // Every error, not only the first: a later failure (a kill of a gone process) must not go
    // unhandled either.
    onError = (e: Error) => {
      running.exit ??= `${this.#o.name} could not be started: ${e.message}`;
    };
    if (spawnError) onError(spawnError);
    child.once('exit', (code, signal) => {
      running.exit = signal
        ? `${this.#o.name} was killed by ${signal}`
        : `${this.#o.name} exited with code ${code ?? 'unknown'}`;
      this.#o.log.warn(
        { pid: running.pid, version: running.version, code, signal },
        `${this.#o.name} exited`,
      );
    });
    this.#running = running;
    if (child.pid === undefined) {
      running.exit ??= `${this.#o.name} could not be started: ${spec.command}`;
      return;
    }
    // Read after the exit listener is on: it may exit while /proc is read.
    const identity = await identityOf(child.pid);
    running.identity = identity;
    if (identity) {
      try {
        // Written here at once, so a restart of this updater before the child got as far as
        // writing its own still finds it; the child's own write merges with this one.
        await claimPidFile(this.#o.stateDir, this.#o.name, {
          exclusive: this.#o.name === 'agent',
          owner: identity,
          version: release.version,
          instance,
        });
      } catch (e: unknown) {
        // Another live agent holds the state dir (this one will say so and exit), or the
        // state dir is unwritable: the child runs; only a restarted updater loses track of it.
        this.#o.log.warn({ err: e, file: this.#pidFile }, `${this.#o.name} pid file not written`);
      }
    }
    this.#o.log.info({ pid: child.pid, version: release.version }, `${this.#o.name} started`);
  }

  #hasCommand(release: AgentRelease): boolean {
    try {
      return this.#o.command(release) !== null;
    } catch (e: unknown) {
      void e; // a bad start command: #start records why, so it counts as one to try
      return true;
    }
  }

  #failedStart(release: AgentRelease, reason: string): void {
    this.#running = {
      pid: 0,
      identity: undefined,
      instance: '',
      version: release.version,
      child: undefined,
      startedMs: performance.now(),
      logOffset: 0,
      exit: `${this.#o.name} could not be started: ${reason}`,
    };
    this.#o.log.warn({ version: release.version, reason }, `${this.#o.name} could not be started`);
  }

  async #stopNow(): Promise<void> {
    const running = this.#running;
    this.#running = undefined;
    if (running && running.exit === undefined && running.pid > 0) {
      const ours =
        running.child !== undefined ||
        (running.identity !== undefined &&
          (await isSameProcess(running.identity)) &&
          (await hasEnvToken(running.pid, this.#o.instanceEnv, running.instance)));
      if (ours && signalProcess(running.pid, 'SIGTERM')) {
        if (!(await waitGone(running.pid, this.#o.stopTimeoutMs ?? 10_000))) {
          this.#o.log.warn({ pid: running.pid }, `${this.#o.name} ignored SIGTERM; killing it`);
          signalProcess(running.pid, 'SIGKILL');
          await waitGone(running.pid, 5000);
        }
      }
      this.#o.log.info({ pid: running.pid, version: running.version }, `${this.#o.name} stopped`);
    }
    // The child removes its own file when it exits cleanly; one killed leaves it behind.
    if (running?.identity) await removePidFileOf(this.#pidFile, running.identity);
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
        this.#o.log.error({ err: e }, `${this.#o.name} supervision step failed`);
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
      running.identity !== undefined &&
      !(await isSameProcess(running.identity))
    ) {
      running.exit = `adopted ${this.#o.name} is gone`;
    }
    if (running && running.exit === undefined) {
      if (performance.now() - running.startedMs > STABLE_RUN_MS) this.#attempt = 0;
      return;
    }
    if (running === undefined && !this.#hasCommand(release)) return;
    const max = this.#o.maxStartAttempts ?? DEFAULT_MAX_START_ATTEMPTS;
    if (this.#attempt >= max) {
      this.#supervised = null;
      this.#o.log.error(
        { version: release.version, attempts: this.#attempt, reason: running?.exit },
        `${this.#o.name} keeps failing; no more restarts until the next release or updater restart`,
      );
      return;
    }
    const delay = backoffDelayMs(
      this.#attempt++,
      this.#o.restartBaseMs ?? 500,
      this.#o.restartCapMs ?? 30_000,
    );
    this.#o.log.warn(
      { version: release.version, delayMs: delay, attempt: this.#attempt, reason: running?.exit },
      `${this.#o.name} down; restarting`,
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
    if ((await sizeOf(this.#o.logFile)) <= MAX_CHILD_LOG_BYTES) return;
    await copyFile(this.#o.logFile, `${this.#o.logFile}.1`);
    await truncate(this.#o.logFile, 0);
  }
}

async function sizeOf(path: string): Promise<number> {
  return stat(path).then(
    (s) => s.size,
    () => 0 /* missing: nothing logged yet */,
  );
}

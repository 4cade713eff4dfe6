import { spawn } from 'node:child_process';
import type { Logger } from 'pino';
import { CorralError, ErrorCode, MAX_AGENT_OUTPUT_BYTES, RELEASE_VERSION_ENV } from '../protocol/index.js';
import type { AgentRelease, AgentRunner } from './agent-runner.js';
import { SingleFlight } from '../kit/single-flight.js';

const AGENT_RUNNER_MAX_QUEUED = 64;

export interface CommandAgentRunnerOptions {
  /** argv of the restart command, e.g. ['systemctl', 'restart', 'corral-agent']; no shell. */
  readonly restartCommand: readonly string[];
  readonly env: Readonly<Record<string, string | undefined>>;
  readonly log: Logger;
  /** How long the command may run, in ms. */
  readonly timeoutMs?: number;
}

/**
 * Restarts the agent through an operator-configured command (a service manager that starts
 * the agent from `ROOT/current`). The service manager supervises; `stop` is not available
 * (the command restarts, it does not stop), and the last output is the command's own.
 */
export class CommandAgentRunner implements AgentRunner {
  readonly #o: CommandAgentRunnerOptions;
  /** Start, stop and restart one at a time; the updater never has more than a few waiting. */
  readonly #serial = new SingleFlight({ name: 'agent runner', maxQueued: AGENT_RUNNER_MAX_QUEUED });
  #output = '';
  #failure: string | undefined;

  constructor(options: CommandAgentRunnerOptions) {
    if (options.restartCommand.length === 0)
      throw new CorralError(ErrorCode.VALIDATION, 'restart command is empty');
    this.#o = options;
  }

  restart(release: AgentRelease): Promise<void> {
    return this.#serial.run(async () => {
      const [command, ...args] = this.#o.restartCommand;
      const result = await run(
        command ?? '',
        args,
        {
          ...this.#o.env,
          [RELEASE_VERSION_ENV]: release.version,
        },
        this.#o.timeoutMs ?? 60_000,
      );
      this.#output = result.output;
      this.#failure = result.failure;
      if (result.failure) this.#o.log.warn({ reason: result.failure }, 'agent restart command failed');
      else this.#o.log.info({ version: release.version }, 'agent restart command ran');
    });
  }

  async adopt(): Promise<string | null> {
    // The service manager keeps the agent running across updater restarts; the caller probes it.
    return null;
  }

  async stop(): Promise<void> {
    this.#o.log.warn('agent stop requested but the restart command cannot stop it');
  }

  exitReason(): string | undefined {
    return this.#failure;
  }

  async lastOutput(): Promise<string> {
    return this.#output;
  }

  supervise(_release: AgentRelease | null): void {
    // The service manager supervises the agent.
  }

  async close(): Promise<void> {
    await this.#serial.run(async () => undefined);
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }
}

function run(
  command: string,
  args: readonly string[],
  env: Record<string, string | undefined>,
  timeoutMs: number,
): Promise<{ output: string; failure: string | undefined }> {
  return new Promise((resolve) => {
    let output = '';
    const keep = (chunk: Buffer): void => {
      output = (output + chunk.toString('utf8')).slice(-MAX_AGENT_OUTPUT_BYTES);
    };
    const child = spawn(command, args, { env, stdio: ['ignore', 'pipe', 'pipe'], timeout: timeoutMs });
    child.stdout.on('data', keep);
    child.stderr.on('data', keep);
    child.once('error', (e: Error) => resolve({ output, failure: `restart command failed: ${e.message}` }));
    child.once('close', (code, signal) =>
      resolve({
        output,
        failure:
          code === 0
            ? undefined
            : `restart command ${signal ? `was killed by ${signal}` : `exited with code ${code}`}`,
      }),
    );
  });
}

import { execFile } from 'node:child_process';
import { get as httpGet } from 'node:http';
import { connect } from 'node:net';
import type { HealthCheck } from '../../protocol/service-spec.js';

export const DEFAULT_PROBE_INTERVAL_MS = 10_000;
export const DEFAULT_PROBE_TIMEOUT_MS = 2_000;
export const DEFAULT_FAILURE_THRESHOLD = 3;

export interface ProbeContext {
  readonly cwd: string;
  readonly env: Readonly<Record<string, string>>;
  readonly signal: AbortSignal;
  /**
   * Runs a `command` check inside the workload (a container) and resolves with its exit code;
   * absent: the command runs on the host, beside the process.
   */
  readonly exec?: (argv: readonly string[], signal: AbortSignal) => Promise<number>;
}

/** Runs one probe; resolves with undefined when healthy, or the reason it is not. */
export async function runProbe(check: HealthCheck, ctx: ProbeContext): Promise<string | undefined> {
  const timeoutMs = check.timeoutMs ?? DEFAULT_PROBE_TIMEOUT_MS;
  const signal = AbortSignal.any([ctx.signal, AbortSignal.timeout(timeoutMs)]);
  try {
    switch (check.type) {
      case 'command':
        if (ctx.exec) {
          const code = await ctx.exec([check.command, ...(check.args ?? [])], signal);
          return code === 0 ? undefined : `health command failed: exit ${code}`;
        }
        return await commandProbe(check.command, check.args ?? [], ctx, signal);
      case 'tcp':
        return await tcpProbe(check.host ?? '127.0.0.1', check.port, signal);
      case 'http':
        return await httpProbe(check.url, signal);
    }
  } catch (e: unknown) {
    if (signal.aborted && !ctx.signal.aborted) return `probe timed out after ${timeoutMs} ms`;
    return `probe failed: ${e instanceof Error ? e.message : String(e)}`;
  }
}

function commandProbe(
  command: string,
  args: readonly string[],
  ctx: ProbeContext,
  signal: AbortSignal,
): Promise<string | undefined> {
  return new Promise((resolve) => {
    execFile(
      command,
      [...args],
      { cwd: ctx.cwd, env: { ...ctx.env }, signal, maxBuffer: 64 * 1024, killSignal: 'SIGKILL' },
      (error) => {
        if (!error) resolve(undefined);
        else if (signal.aborted) resolve('health command timed out');
        else
          resolve(
            `health command failed: ${typeof error.code === 'number' ? `exit ${error.code}` : error.message}`,
          );
      },
    );
  });
}

function tcpProbe(host: string, port: number, signal: AbortSignal): Promise<string | undefined> {
  return new Promise((resolve) => {
    const socket = connect({ host, port, signal });
    socket.once('connect', () => {
      socket.destroy();
      resolve(undefined);
    });
    socket.once('error', (e: Error) => resolve(`tcp ${host}:${port}: ${e.message}`));
  });
}

/** GET `url` (http://, as the schema allows) once, no keep-alive; healthy below 400. The body is not read. */
function httpProbe(url: string, signal: AbortSignal): Promise<string | undefined> {
  return new Promise((resolve, reject) => {
    const req = httpGet(url, { signal, agent: false }, (res) => {
      const status = res.statusCode ?? 0;
      res.destroy();
      resolve(status < 400 ? undefined : `http ${url}: status ${status}`);
    });
    req.on('error', reject);
  });
}

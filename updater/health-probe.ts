import { setTimeout as sleep } from 'node:timers/promises';
import { Agent, request } from 'undici';
import { AGENT_LOCAL_HEALTH_PATH, AgentLocalHealth, parseJsonWith } from '../protocol/index.js';

const MAX_HEALTH_BYTES = 4096;
const ATTEMPT_TIMEOUT_MS = 2000;

export type ProbeResult =
  { readonly ok: true; readonly health: AgentLocalHealth } | { readonly ok: false; readonly reason: string };

/** One health request to the agent's local Unix socket. Never throws. */
export async function probeOnce(socketPath: string, signal?: AbortSignal): Promise<ProbeResult> {
  const dispatcher = new Agent({
    connect: { socketPath },
    headersTimeout: ATTEMPT_TIMEOUT_MS,
    bodyTimeout: ATTEMPT_TIMEOUT_MS,
  });
  try {
    const res = await request(`http://localhost${AGENT_LOCAL_HEALTH_PATH}`, {
      dispatcher,
      signal: signal
        ? AbortSignal.any([signal, AbortSignal.timeout(ATTEMPT_TIMEOUT_MS)])
        : AbortSignal.timeout(ATTEMPT_TIMEOUT_MS),
    });
    const chunks: Buffer[] = [];
    let size = 0;
    for await (const chunk of res.body) {
      size += (chunk as Buffer).length;
      if (size > MAX_HEALTH_BYTES) return { ok: false, reason: 'health answer too large' };
      chunks.push(chunk as Buffer);
    }
    if (res.statusCode !== 200) return { ok: false, reason: `health answered HTTP ${res.statusCode}` };
    const health = parseJsonWith(
      AgentLocalHealth,
      Buffer.concat(chunks).toString('utf8'),
      'agent health',
      MAX_HEALTH_BYTES,
    );
    return { ok: true, health };
  } catch (e: unknown) {
    const code = (e as { code?: unknown }).code;
    return {
      ok: false,
      reason: typeof code === 'string' ? code : e instanceof Error ? e.message : String(e),
    };
  } finally {
    await dispatcher.destroy().catch(() => undefined /* already closed */);
  }
}

export interface WaitHealthyOptions {
  readonly socketPath: string;
  readonly version: string;
  readonly timeoutMs: number;
  readonly intervalMs: number;
  /** Returns a reason when the agent is known dead (it exited): stops waiting at once. */
  readonly dead?: () => string | undefined;
  readonly signal?: AbortSignal;
}

/**
 * Polls the agent's health until it reports `version`, the agent is known dead, or the
 * timeout passes. Resolves with the last health or the reason it never became healthy.
 */
export async function waitHealthy(options: WaitHealthyOptions): Promise<ProbeResult> {
  const deadline = performance.now() + options.timeoutMs;
  let last = 'no answer yet';
  for (;;) {
    const died = options.dead?.();
    if (died !== undefined) return { ok: false, reason: died };
    const result = await probeOnce(options.socketPath, options.signal);
    if (result.ok && result.health.version === options.version) return result;
    last = result.ok
      ? `agent reports version ${result.health.version}, not ${options.version}`
      : result.reason;
    if (performance.now() >= deadline) {
      return {
        ok: false,
        reason: `agent did not report version ${options.version} within ${options.timeoutMs} ms (${last})`,
      };
    }
    await sleep(Math.min(options.intervalMs, Math.max(0, deadline - performance.now())), undefined, {
      signal: options.signal,
    });
  }
}

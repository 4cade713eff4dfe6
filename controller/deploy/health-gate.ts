import { setTimeout as sleep } from 'node:timers/promises';
import { Value } from '@sinclair/typebox/value';
import { AgentStatus } from '../../protocol/agent-api.js';
import type { ServiceStatus } from '../../protocol/heartbeat.js';
import type { ServiceSpec } from '../../protocol/service-spec.js';
import type { WorkerClient, WorkerTarget } from '../agent-client.js';
import { describeCallError } from '../fleet/call-errors.js';

/** How long a deploy's services must stay running on a host before its step succeeds, in ms. */
export const DEFAULT_MIN_HEALTHY_MS = 10_000;
/** How long services may take to come up before the step fails, in ms (on top of min healthy). */
export const DEFAULT_HEALTH_START_MS = 60_000;
/** Between two looks at the agent's status, in ms. */
const HEALTH_POLL_MS = 500;
/** The longest reason a step keeps (the rest of a long list is cut). */
const MAX_REASON_CHARS = 1500;

export interface HealthGate {
  readonly minHealthyMs: number;
  /** From the apply to the first moment every service runs; then `minHealthyMs` more. */
  readonly startMs: number;
  readonly pollMs?: number;
}

/** What one look at the agent's status says about a host's set. */
export type HealthLook =
  | { readonly kind: 'healthy'; readonly marks: ReadonlyMap<string, string> }
  | { readonly kind: 'waiting'; readonly reason: string }
  | { readonly kind: 'failed'; readonly reason: string };

const describe = (name: string, s: ServiceStatus | undefined): string =>
  s === undefined
    ? `${name}: not reported`
    : `${name}: ${s.state}${s.lastError !== null ? `: ${s.lastError.slice(0, 300)}` : ''}`;

const clip = (parts: readonly string[]): string => {
  const text = parts.join('; ');
  return text.length > MAX_REASON_CHARS ? `${text.slice(0, MAX_REASON_CHARS)}…` : text;
};

/**
 * Judges one status against the set sent at `generation`. Healthy: the agent holds that
 * generation (or a later one), is not applying, and every service of the set runs (a service
 * whose restart policy is not `always` may also have ended `stopped` by itself). Failed at
 * once: a service ended `failed` (its restart limit was hit or it could not start). `marks`
 * is what must stay the same for the services to count as up without a break: each one's
 * pid and restart count. Pure.
 */
export function judgeHealth(
  status: AgentStatus,
  generation: number,
  services: readonly ServiceSpec[],
): HealthLook {
  if (status.generation < generation) {
    return { kind: 'waiting', reason: `the agent is still at generation ${status.generation}` };
  }
  const byName = new Map(status.services.map((s) => [s.name, s]));
  const failed: string[] = [];
  const down: string[] = [];
  const marks = new Map<string, string>();
  for (const spec of services) {
    const s = byName.get(spec.name);
    if (s?.state === 'failed') failed.push(describe(spec.name, s));
    else if (s?.state === 'running' || (s?.state === 'stopped' && spec.restart !== 'always')) {
      marks.set(spec.name, `${s.state}/${s.pid ?? '-'}/${s.restarts}`);
    } else down.push(describe(spec.name, s));
  }
  if (failed.length > 0) return { kind: 'failed', reason: clip(failed) };
  if (down.length > 0) return { kind: 'waiting', reason: clip(down) };
  if (status.applying) return { kind: 'waiting', reason: 'the agent is still applying' };
  return { kind: 'healthy', marks };
}

const sameMarks = (a: ReadonlyMap<string, string>, b: ReadonlyMap<string, string>): boolean =>
  a.size === b.size && [...a].every(([k, v]) => b.get(k) === v);

export type HealthOutcome = { readonly ok: true } | { readonly ok: false; readonly reason: string };

/**
 * Waits until the host's services of `generation` have run without a break (same pid, same
 * restart count) for `gate.minHealthyMs`, looking at `GET /v1/status` every poll through the
 * pinned client. Fails with every unhealthy service's `name: state: last error` when one
 * ends failed, or when they are not all up for long enough within `startMs + minHealthyMs`.
 * Never throws; an aborted `signal` fails with the shutdown as the reason.
 */
export async function awaitHealthy(
  client: WorkerClient,
  target: WorkerTarget,
  generation: number,
  services: readonly ServiceSpec[],
  gate: HealthGate,
  signal: AbortSignal,
): Promise<HealthOutcome> {
  if (services.length === 0) return { ok: true };
  const pollMs = gate.pollMs ?? HEALTH_POLL_MS;
  const startBy = performance.now() + gate.startMs;
  let upSince: { at: number; marks: ReadonlyMap<string, string> } | null = null;
  let last = 'no status read yet';
  for (;;) {
    if (signal.aborted)
      return { ok: false, reason: 'stopped: the controller shut down during the health check' };
    let look: HealthLook;
    try {
      const reply = await client.call(target, {
        method: 'GET',
        path: '/v1/status',
        timeoutMs: Math.max(1_000, Math.min(10_000, pollMs * 10)),
        signal,
      });
      look =
        reply.statusCode === 200 && Value.Check(AgentStatus, reply.json)
          ? judgeHealth(reply.json, generation, services)
          : { kind: 'waiting', reason: `the agent's status answered ${reply.statusCode}` };
    } catch (e: unknown) {
      const failure = describeCallError(e);
      look = { kind: 'waiting', reason: `status unreadable: ${failure.message} (${failure.code})` };
    }
    const now = performance.now();
    if (look.kind === 'failed') return { ok: false, reason: look.reason };
    if (look.kind === 'healthy') {
      if (upSince === null || !sameMarks(upSince.marks, look.marks)) upSince = { at: now, marks: look.marks };
      if (now - upSince.at >= gate.minHealthyMs) return { ok: true };
      last = `restarted while being watched (${[...look.marks.keys()].join(', ')})`;
    } else {
      upSince = null;
      last = look.reason;
    }
    // Up without a break must start within the start window; a service that keeps restarting
    // (a new pid each look) never does, so the wait is bounded by startMs + minHealthyMs.
    if (upSince === null ? now >= startBy : upSince.at > startBy) {
      return { ok: false, reason: `not healthy in time: ${last}` };
    }
    const wake = upSince === null ? startBy : upSince.at + gate.minHealthyMs;
    try {
      await sleep(Math.min(pollMs, Math.max(0, wake - now)), undefined, { signal });
    } catch {
      // AbortError: the loop's next turn reports the shutdown.
    }
  }
}

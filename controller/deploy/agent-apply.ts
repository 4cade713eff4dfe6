import { Value } from '@sinclair/typebox/value';
import { AgentStatus, ApplyAccepted } from '../../protocol/agent-api.js';
import { ErrorCode, ErrorEnvelope } from '../../protocol/errors.js';
import { PkiErrorCode } from '../../pki/index.js';
import type { ServiceSpec } from '../../protocol/service-spec.js';
import type { WorkerClient, WorkerReply } from '../agent-client.js';
import { describeCallError } from '../fleet/call-errors.js';

/** How long one host's apply (with its one retry) may take, in ms. */
export const DEFAULT_APPLY_TIMEOUT_MS = 10_000;
const SHUTDOWN_REASON = `stopped: the controller shut down before the agent answered (${ErrorCode.UNAVAILABLE})`;

export interface ApplyTarget {
  readonly hostId: string;
  readonly address: string;
  readonly port: number;
  /** The host's pinned agent fingerprints; empty means it cannot be called. */
  readonly fingerprints: readonly string[];
}

export type ApplyOutcome =
  | { readonly outcome: 'applied' | 'unchanged'; readonly generation: number }
  | { readonly outcome: 'failed'; readonly generation: number; readonly reason: string };

const LABELS: Record<string, string> = {
  [ErrorCode.UNAVAILABLE]: 'unreachable',
  [ErrorCode.TIMEOUT]: 'no answer in time',
  [PkiErrorCode.PIN_MISMATCH]: 'pin mismatch',
};

function describeReply(reply: WorkerReply): string {
  if (Value.Check(ErrorEnvelope, reply.json)) {
    return `agent refused (${reply.statusCode}): ${reply.json.error.message} (${reply.json.error.code})`;
  }
  return `agent answered ${reply.statusCode} without a valid reply`;
}

/** The agent refused the generation: it holds a newer one, or the same with other services. */
function isGenerationClash(reply: WorkerReply): boolean {
  if (reply.statusCode !== 409 || !Value.Check(ErrorEnvelope, reply.json)) return false;
  const code = reply.json.error.code;
  return code === ErrorCode.STALE_GENERATION || code === ErrorCode.CONFLICT;
}

/**
 * Sends one host its whole desired set through the pinned client (the agent's fingerprint is
 * checked during the handshake of the connection that carries the request). Never throws:
 * the outcome says applied, unchanged (the agent already had this generation and set), or
 * failed with a reason. When the agent holds a newer generation than the controller (its
 * state outlived the controller's), the set is sent once more just above the agent's, and the
 * outcome carries the generation that was accepted.
 */
export async function applyToHost(
  client: WorkerClient,
  target: ApplyTarget,
  generation: number,
  services: readonly ServiceSpec[],
  limits: { readonly timeoutMs?: number; readonly signal?: AbortSignal } = {},
): Promise<ApplyOutcome> {
  const timeoutMs = limits.timeoutMs ?? DEFAULT_APPLY_TIMEOUT_MS;
  const stopped = (): ApplyOutcome => ({ outcome: 'failed', generation, reason: SHUTDOWN_REASON });
  if (limits.signal?.aborted) return stopped();
  if (target.fingerprints.length === 0) {
    return {
      outcome: 'failed',
      generation,
      reason: `no agent certificate is pinned (${ErrorCode.NOT_ENROLLED})`,
    };
  }
  const signal = limits.signal
    ? AbortSignal.any([limits.signal, AbortSignal.timeout(timeoutMs)])
    : AbortSignal.timeout(timeoutMs);
  const worker = { ...target, fingerprints: [...target.fingerprints] };
  const send = (g: number) =>
    client.call(worker, {
      method: 'POST',
      path: '/v1/apply',
      body: { generation: g, services },
      timeoutMs,
      signal,
    });
  let sent = generation;
  try {
    let reply = await send(sent);
    if (isGenerationClash(reply)) {
      const status = await client.call(worker, { method: 'GET', path: '/v1/status', timeoutMs, signal });
      if (
        status.statusCode === 200 &&
        Value.Check(AgentStatus, status.json) &&
        status.json.generation >= sent
      ) {
        sent = status.json.generation + 1;
        reply = await send(sent);
      }
    }
    if (
      reply.statusCode === 202 &&
      Value.Check(ApplyAccepted, reply.json) &&
      reply.json.generation === sent
    ) {
      return { outcome: reply.json.noop ? 'unchanged' : 'applied', generation: sent };
    }
    return { outcome: 'failed', generation: sent, reason: describeReply(reply) };
  } catch (e: unknown) {
    if (limits.signal?.aborted) return { ...stopped(), generation: sent };
    const failure = describeCallError(e);
    const label = LABELS[failure.code] ?? 'call failed';
    return { outcome: 'failed', generation: sent, reason: `${label}: ${failure.message} (${failure.code})` };
  }
}

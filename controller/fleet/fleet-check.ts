import type { Kysely } from 'kysely';
import type { CheckResult } from '../../protocol/admin-hosts.js';
import { AgentHealth } from '../../protocol/agent-api.js';
import { formatHostPort } from '../../kit/host-port.js';
import { ErrorCode } from '../../protocol/errors.js';
import type { WorkerClient } from '../agent-client.js';
import type { ControllerDatabase } from '../db/schema.js';
import type { PinRegistry } from '../pins/pin-registry.js';
import { listHostViews, type Liveness } from './host-store.js';
import { describeCallError } from './call-errors.js';
import { Value } from '@sinclair/typebox/value';
import { mapConcurrent } from '../../kit/concurrency.js';

export const DEFAULT_CHECK_TIMEOUT_MS = 5_000;
/** Probes in flight at once. */
export const CHECK_CONCURRENCY = 32;

/**
 * Probes the agent `/v1/health` of every host that is not decommissioned, concurrently, over
 * mutual TLS with the pinned fingerprint checked on that connection. Never throws for a host:
 * each result says whether it answered and why not.
 */
export interface FleetCheckDeps {
  readonly db: Kysely<ControllerDatabase>;
  readonly pins: PinRegistry;
  readonly client: WorkerClient;
  readonly live: Liveness;
}

export async function checkFleet(
  deps: FleetCheckDeps,
  timeoutMs = DEFAULT_CHECK_TIMEOUT_MS,
): Promise<CheckResult[]> {
  const hosts = (await listHostViews(deps.db, deps.live)).filter((h) => h.status !== 'decommissioned');
  return mapConcurrent(hosts, CHECK_CONCURRENCY, async (host): Promise<CheckResult> => {
    const base = {
      name: host.name,
      address: formatHostPort(host.address, host.agentPort),
      status: host.status,
    };
    const fingerprints = deps.pins.fingerprintsFor(host.id, 'agent');
    if (fingerprints.length === 0) {
      return {
        ...base,
        reachable: false,
        latencyMs: null,
        agentVersion: null,
        error: { code: ErrorCode.NOT_ENROLLED, message: 'no agent certificate is pinned' },
      };
    }
    const started = performance.now();
    try {
      const reply = await deps.client.call(
        { hostId: host.id, address: host.address, port: host.agentPort, fingerprints },
        { method: 'GET', path: '/v1/health', timeoutMs },
      );
      const latencyMs = Math.round((performance.now() - started) * 10) / 10;
      const health = Value.Check(AgentHealth, reply.json) ? reply.json : undefined;
      const ok = reply.statusCode === 200 && health !== undefined && health.hostId === host.id;
      return {
        ...base,
        reachable: ok,
        latencyMs,
        agentVersion: health?.version ?? null,
        error: ok
          ? null
          : {
              code: ErrorCode.UNAVAILABLE,
              message: `agent answered ${reply.statusCode} without a valid health`,
            },
      };
    } catch (e: unknown) {
      return {
        ...base,
        reachable: false,
        latencyMs: null,
        agentVersion: null,
        error: describeCallError(e),
      };
    }
  });
}

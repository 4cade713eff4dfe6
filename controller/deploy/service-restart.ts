import type { Kysely } from 'kysely';
import type { Logger } from 'pino';
import { Value } from '@sinclair/typebox/value';
import type {
  InstanceRestartResult,
  ServiceRestartRequest,
  ServiceRestartResponse,
} from '../../protocol/admin-restart.js';
import { RestartResponse } from '../../protocol/agent-api.js';
import { CorralError, ErrorCode, ErrorEnvelope } from '../../protocol/errors.js';
import type { OperationState } from '../../protocol/operations.js';
import type { WorkerClient } from '../agent-client.js';
import type { AuditLog } from '../audit/audit-log.js';
import type { ControllerDatabase } from '../db/schema.js';
import { describeCallError } from '../fleet/call-errors.js';
import type { Liveness } from '../fleet/host-store.js';
import type { PinRegistry } from '../pins/pin-registry.js';
import { loadSnapshot, type DesiredEntry, type HostInfo } from './desired-state.js';
import type { Operations } from './operations.js';
import { serviceOfInstance } from './placement.js';

/** How long one instance's restart may take on its agent (stop grace included), in ms. */
export const DEFAULT_RESTART_TIMEOUT_MS = 60_000;

export interface RestartDeps {
  readonly db: Kysely<ControllerDatabase>;
  readonly client: WorkerClient;
  readonly pins: PinRegistry;
  readonly operations: Operations;
  readonly audit: AuditLog;
  readonly log: Logger;
  readonly signal: AbortSignal;
  readonly timeoutMs?: number;
  live(): Liveness;
}

/** The placed instances `req` names, by host, in host-name order. */
function selectInstances(
  hosts: ReadonlyMap<string, HostInfo>,
  desired: readonly DesiredEntry[],
  req: ServiceRestartRequest,
): { host: HostInfo; instances: string[] }[] {
  const byHost = new Map<string, string[]>();
  for (const d of desired) {
    const host = hosts.get(d.hostId);
    if (!host || host.decommissioned) continue;
    if (req.host !== undefined && host.name !== req.host) continue;
    if (d.service !== req.service && serviceOfInstance(d.service) !== req.service) continue;
    byHost.set(d.hostId, [...(byHost.get(d.hostId) ?? []), d.service].sort());
  }
  return [...byHost.entries()]
    .map(([id, instances]) => ({ host: hosts.get(id) as HostInfo, instances }))
    .sort((a, b) => (a.host.name < b.host.name ? -1 : 1));
}

async function restartOnAgent(
  d: RestartDeps,
  host: HostInfo,
  instance: string,
): Promise<InstanceRestartResult> {
  const failed = (reason: string): InstanceRestartResult => ({
    host: host.name,
    instance,
    ok: false,
    pid: null,
    restarts: null,
    reason,
  });
  const fingerprints = d.pins.fingerprintsFor(host.id, 'agent');
  if (fingerprints.length === 0) return failed('no pinned agent certificate for this host');
  try {
    const reply = await d.client.call(
      { hostId: host.id, address: host.address, port: host.agentPort, fingerprints },
      {
        method: 'POST',
        path: '/v1/restart',
        body: { service: instance },
        timeoutMs: d.timeoutMs ?? DEFAULT_RESTART_TIMEOUT_MS,
        signal: d.signal,
      },
    );
    if (reply.statusCode === 202 && Value.Check(RestartResponse, reply.json)) {
      const r = reply.json;
      return {
        host: host.name,
        instance,
        ok: r.error === null,
        pid: r.pid,
        restarts: r.restarts,
        reason: r.error,
      };
    }
    if (Value.Check(ErrorEnvelope, reply.json)) {
      return failed(
        `agent refused (${reply.statusCode}): ${reply.json.error.message} (${reply.json.error.code})`,
      );
    }
    return failed(`agent answered ${reply.statusCode} without a valid reply`);
  } catch (e: unknown) {
    const f = describeCallError(e);
    return failed(`${f.message} (${f.code})`);
  }
}

/**
 * Restarts the placed instances of `req.service` (every host it is placed on, or `req.host`),
 * one host at a time and one instance at a time, as a `restart` operation with a step per host
 * and an audit entry. Throws CORRAL_ERR_NOT_FOUND, before anything is recorded, when no placed
 * instance matches. The operation ends `succeeded`, `partial` or `failed` by its hosts.
 */
export async function restartService(
  d: RestartDeps,
  req: ServiceRestartRequest,
  actor: string,
): Promise<ServiceRestartResponse> {
  const snap = await loadSnapshot(d.db, d.live());
  if (
    req.host !== undefined &&
    ![...snap.hosts.values()].some((h) => h.name === req.host && !h.decommissioned)
  ) {
    throw new CorralError(ErrorCode.NOT_FOUND, `no host named ${req.host}`);
  }
  const targets = selectInstances(snap.hosts, snap.desired, req);
  const where = req.host !== undefined ? ` on host ${req.host}` : '';
  if (targets.length === 0) {
    throw new CorralError(ErrorCode.NOT_FOUND, `no deployed service matches ${req.service}${where}`);
  }
  const total = targets.reduce((n, t) => n + t.instances.length, 0);
  const target = `service ${req.service}${where}`;
  const summary = { services: total, removed: 0, hosts: targets.length };
  const op = await d.db.transaction().execute(async (trx) => {
    const recorder = await d.operations.begin(
      trx,
      {
        kind: 'restart',
        actor,
        target,
        summary: { ...summary, failedHosts: 0 },
        steps: targets.map((t) => ({
          hostId: t.host.id,
          hostName: t.host.name,
          generation: snap.hostDesired.get(t.host.id)?.generation ?? 0,
          services: t.instances.length,
        })),
      },
      [
        {
          level: 'info',
          message: `restart of ${total} instances of ${req.service} on ${targets.length} hosts started by ${actor}`,
        },
      ],
    );
    await d.audit.append(
      {
        actor,
        action: 'restart',
        target,
        details: {
          operationId: recorder.id,
          instances: targets.flatMap((t) => t.instances.map((i) => `${i}@${t.host.name}`)),
        },
      },
      trx,
    );
    return recorder;
  });
  d.log.info({ operationId: op.id, service: req.service, hosts: targets.length }, 'restart started');
  const results: InstanceRestartResult[] = [];
  let failedHosts = 0;
  for (const t of targets) {
    const host = t.host.name;
    await op.record([{ level: 'info', host, message: `restarting ${t.instances.join(', ')}` }], {
      hostId: t.host.id,
      state: 'running',
    });
    const mine: InstanceRestartResult[] = [];
    for (const instance of t.instances) mine.push(await restartOnAgent(d, t.host, instance));
    results.push(...mine);
    const bad = mine.filter((r) => !r.ok);
    if (bad.length > 0) failedHosts++;
    await op.record(
      mine.map((r) =>
        r.ok
          ? { level: 'info' as const, host, message: `${r.instance} restarted (pid ${r.pid ?? '?'})` }
          : {
              level: 'error' as const,
              host,
              message: `${r.instance} not restarted: ${r.reason ?? 'unknown'}`,
            },
      ),
      {
        hostId: t.host.id,
        state: bad.length > 0 ? 'failed' : 'succeeded',
        detail:
          bad.length > 0 ? bad.map((r) => `${r.instance}: ${r.reason ?? 'unknown'}`).join('; ') : 'restarted',
      },
    );
  }
  const state: OperationState =
    failedHosts === 0 ? 'succeeded' : failedHosts === targets.length ? 'failed' : 'partial';
  await op.finish(
    state,
    { ...summary, failedHosts },
    {
      level: state === 'succeeded' ? 'info' : 'error',
      message: `restart ${state}: ${targets.length - failedHosts} of ${targets.length} hosts restarted`,
    },
    state === 'succeeded' ? null : `${failedHosts} of ${targets.length} hosts failed to restart`,
  );
  d.log.info({ operationId: op.id, state, failedHosts }, 'restart finished');
  return { operationId: op.id, service: req.service, state, instances: results, ok: state === 'succeeded' };
}

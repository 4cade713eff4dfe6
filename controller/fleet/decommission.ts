import type { Kysely } from 'kysely';
import type { Logger } from 'pino';
import type { DecommissionResponse } from '../../protocol/admin-hosts.js';
import { CorralError, ErrorCode } from '../../protocol/errors.js';
import type { WorkerClient } from '../agent-client.js';
import type { AuditLog } from '../audit/audit-log.js';
import { isoAt, type Clock } from '../clock.js';
import type { ControllerDatabase } from '../db/schema.js';
import type { LiveSockets } from '../http/live-sockets.js';
import type { MutablePinRegistry } from '../pins/pin-registry.js';
import { describeCallError } from './call-errors.js';
import type { HeartbeatWriter } from './heartbeat-writer.js';
import { findHostByName, hostViewById, type Liveness } from './host-store.js';

/** How long decommission waits for the agent to accept its self-destruct, in ms. */
export const DEFAULT_SELF_DESTRUCT_WAIT_MS = 5_000;

export interface DecommissionDeps {
  readonly db: Kysely<ControllerDatabase>;
  readonly pins: MutablePinRegistry;
  readonly client: WorkerClient;
  readonly audit: AuditLog;
  readonly writer: HeartbeatWriter;
  readonly sockets: LiveSockets;
  readonly clock: Clock;
  readonly log: Logger;
  readonly live: () => Liveness;
}

/**
 * Decommissions a host: asks its agent to self-destruct (best effort, bounded wait), then
 * drops its pins so its certificates are refused everywhere from then on, closes its live
 * connections (the pin registry tells every listener), and marks it decommissioned.
 */
export async function decommissionHost(
  deps: DecommissionDeps,
  name: string,
  actor: string,
  waitMs = DEFAULT_SELF_DESTRUCT_WAIT_MS,
): Promise<DecommissionResponse> {
  const { db, pins, client, audit, clock, log } = deps;
  const host = await findHostByName(db, name);
  if (!host) throw new CorralError(ErrorCode.NOT_FOUND, `no host named ${name}`);
  if (host.decommissioned_at !== null) {
    throw new CorralError(ErrorCode.CONFLICT, `host ${name} is already decommissioned`);
  }

  let selfDestruct: DecommissionResponse['selfDestruct'];
  const fingerprints = pins.fingerprintsFor(host.id, 'agent');
  try {
    const reply = await client.call(
      { hostId: host.id, address: host.address, port: host.agent_port, fingerprints },
      { method: 'POST', path: '/v1/self-destruct', body: { hostId: host.id }, timeoutMs: waitMs },
    );
    const ok = reply.statusCode >= 200 && reply.statusCode < 300;
    selfDestruct = { ok, message: ok ? null : `agent answered ${reply.statusCode}` };
  } catch (e: unknown) {
    const failure = describeCallError(e);
    selfDestruct = { ok: false, message: `${failure.code}: ${failure.message}` };
  }

  const nowIso = isoAt(clock.now());
  await db.transaction().execute(async (trx) => {
    const marked = await trx
      .updateTable('hosts')
      .set({ decommissioned_at: nowIso })
      .where('id', '=', host.id)
      .where('decommissioned_at', 'is', null)
      .executeTakeFirst();
    if (marked.numUpdatedRows !== 1n) {
      throw new CorralError(ErrorCode.CONFLICT, `host ${name} is already decommissioned`);
    }
    await trx
      .updateTable('pins')
      .set({ active: 0, retired_at: nowIso, decommissioned: 1 })
      .where('host_id', '=', host.id)
      .where('active', '=', 1)
      .execute();
    await audit.append(
      {
        actor,
        action: 'decommission',
        target: host.name,
        details: {
          hostId: host.id,
          selfDestruct: selfDestruct.ok,
          selfDestructMessage: selfDestruct.message,
        },
      },
      trx,
    );
  });
  const closedConnections = deps.sockets.count(host.id);
  pins.revokeHost(host.id);
  deps.writer.forget(host.id);
  log.info(
    { hostId: host.id, hostName: host.name, selfDestruct: selfDestruct.ok, closedConnections },
    'host decommissioned',
  );
  const view = await hostViewById(db, host.id, deps.live());
  if (!view) throw new CorralError(ErrorCode.INTERNAL, 'decommissioned host vanished');
  return { host: view, selfDestruct, closedConnections };
}

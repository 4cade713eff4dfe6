import type { Kysely } from 'kysely';
import type { Logger } from 'pino';
import type { WorkerClient } from '../agent-client.js';
import type { AuditLog } from '../audit/audit-log.js';
import type { Clock } from '../clock.js';
import type { ControllerDatabase } from '../db/schema.js';
import type { DecommissionDeps } from '../fleet/decommission.js';
import type { Enrollment } from '../fleet/enrollment.js';
import type { HeartbeatWriter } from '../fleet/heartbeat-writer.js';
import type { Liveness } from '../fleet/host-store.js';
import type { TokenStore } from '../fleet/token-store.js';
import type { MutablePinRegistry } from '../pins/pin-registry.js';
import type { LiveSockets } from './live-sockets.js';
import type { ControllerMetrics } from './metrics.js';

/** What the admin API's routes work with. */
export interface AdminContext {
  readonly db: Kysely<ControllerDatabase>;
  /** Read-only connection for list, detail and metrics reads (may be `db` itself). */
  readonly readDb: Kysely<ControllerDatabase>;
  readonly clock: Clock;
  readonly log: Logger;
  readonly pins: MutablePinRegistry;
  readonly audit: AuditLog;
  readonly tokens: TokenStore;
  readonly enrollment: Enrollment;
  readonly client: WorkerClient;
  readonly writer: HeartbeatWriter;
  readonly sockets: LiveSockets;
  readonly metrics: ControllerMetrics;
  readonly caFingerprint: string;
  live(): Liveness;
  /** The join listener, host:port, as workers should dial it. */
  joinAddress(): string;
  readonly decommissionWaitMs: number;
}

export function decommissionDeps(ctx: AdminContext): DecommissionDeps {
  return {
    db: ctx.db,
    pins: ctx.pins,
    client: ctx.client,
    audit: ctx.audit,
    writer: ctx.writer,
    sockets: ctx.sockets,
    clock: ctx.clock,
    log: ctx.log,
    live: () => ctx.live(),
  };
}

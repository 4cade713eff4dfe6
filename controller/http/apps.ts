import type { DatabaseTarget } from '../db/database-target.js';
import type { AddressInfo } from 'node:net';
import type { TLSSocket } from 'node:tls';
import type { Logger } from 'pino';
import type { TlsMaterial } from '../../pki/index.js';
import { MAX_ADMIN_BODY_BYTES, MAX_WORKER_BODY_BYTES } from '../../protocol/constants.js';
import { CorralError, ErrorCode } from '../../protocol/errors.js';
import { formatHostPort, isWildcardHost } from '../../kit/host-port.js';
import type { Kysely } from 'kysely';
import type { WorkerClient } from '../agent-client.js';
import type { AuditLog } from '../audit/audit-log.js';
import type { Clock } from '../clock.js';
import type { ControllerDatabase } from '../db/schema.js';
import type { Deployer } from '../deploy/deployer.js';
import type { Operations } from '../deploy/operations.js';
import { createRolloutControl, type RolloutControl } from '../deploy/halted-rollouts.js';
import type { ClockOffsets } from '../fleet/clock-offsets.js';
import { createDestructiveActions, type BackupFirst } from '../fleet/destructive-actions.js';
import type { Enrollment } from '../fleet/enrollment.js';
import type { HeartbeatBudget } from '../fleet/heartbeat-budget.js';
import type { HeartbeatWriter } from '../fleet/heartbeat-writer.js';
import type { Liveness } from '../fleet/host-store.js';
import type { Renewal } from '../fleet/renewal.js';
import type { TokenStore } from '../fleet/token-store.js';
import type { PinKeeper } from '../pins/pin-keeper.js';
import type { MutablePinRegistry, PinRegistry } from '../pins/pin-registry.js';
import type { ReleaseUpdater } from '../release/update-operation.js';
import type { ControllerIdentity } from '../state/load-state.js';
import type { FleetEvents } from '../events/fleet-events.js';
import type { DiagnoseDeps } from '../diagnose/run-diagnose.js';
import { adminDiagnoseRoutes } from '../routes/admin-diagnose.js';
import { adminEventRoutes } from '../routes/admin-events.js';
import { adminLogRoutes, type LogRoutesOptions } from '../routes/admin-logs.js';
import { adminNotifyRoutes } from '../routes/admin-notify.js';
import { adminAuditRoutes, type AuditRouteOptions } from '../routes/admin-audit.js';
import { adminDeployRoutes, type DeployRouteOptions } from '../routes/admin-deploy.js';
import { adminEnrollRoutes, type EnrollRouteOptions } from '../routes/admin-enroll.js';
import { adminHostRoutes, type HostRouteOptions } from '../routes/admin-hosts.js';
import {
  adminEligibilityRoutes,
  type DrainApprovalBody,
  type EligibilityRouteOptions,
} from '../routes/admin-eligibility.js';
import { drainHost } from '../deploy/host-eligibility.js';
import { adminOpsRoutes } from '../routes/admin-ops.js';
import { adminRestartRoutes } from '../routes/admin-restart.js';
import { adminReleasesRoutes } from '../routes/admin-releases.js';
import { adminRollbackRoutes } from '../routes/admin-rollback.js';
import { adminSystemRoutes, type SystemRouteOptions } from '../routes/admin-system.js';
import { adminUpdateRoutes, type UpdateRouteOptions } from '../routes/admin-update.js';
import { joinRoute } from '../routes/join.js';
import { bundleWrittenRoute } from '../routes/worker-bundle-written.js';
import { heartbeatRoute, type HeartbeatRouteOptions } from '../routes/worker-heartbeat.js';
import type { ControllerList } from '../../protocol/controller-list.js';
import { renewRoute } from '../routes/worker-renew.js';
import { wipeRoutes, type WipeRoutesOptions } from '../routes/worker-wipe.js';
import { adminAuth, type AdminAuthMode } from './admin-auth.js';
import { dashboardAssets, SECURITY_HEADERS } from './dashboard-assets.js';
import { adminSessionRoutes } from '../routes/admin-session.js';
import { createWebSessions, type WebSessions } from '../operators/web-sessions.js';
import { createOperatorSessions, type OperatorSessions } from '../operators/operator-sessions.js';
import { createOperatorStore, type OperatorStore } from '../operators/operator-store.js';
import { adminOperatorRoutes } from '../routes/admin-operators.js';
import { adminApprovalRoutes } from '../routes/admin-approvals.js';
import type { ApprovalGate } from '../approvals/approval-gate.js';
import { registerAdminExecutors } from '../approvals/approval-executors.js';
import { adminBackupRoutes, type BackupRouteOptions } from '../routes/admin-backup.js';
import { isLoopbackHost } from './loopback.js';
import {
  createHttpApp,
  createHttpsApp,
  FLEET_LISTEN_BACKLOG,
  WORKER_KEEP_ALIVE_TIMEOUT_MS,
  type HttpApp,
  type HttpsApp,
} from './fastify-base.js';
import { listenerClose, type ListenerClose } from './listener-close.js';
import type { LiveSockets } from './live-sockets.js';
import type { ControllerMetrics } from './metrics.js';
import { trackWorkerRefusals } from './tls-refusals.js';
import {
  WORKER_TLS_SESSION_ID_CONTEXT,
  WORKER_TLS_SESSION_TIMEOUT_S,
  type TicketKeys,
} from './ticket-keys.js';
import { workerAuth } from './worker-auth.js';

export interface ListenAddress {
  readonly host: string;
  readonly port: number;
}

export interface ControllerListen {
  readonly admin: ListenAddress;
  readonly worker: ListenAddress;
  /** The join listener (TLS without client certificates, POST /v1/join only). */
  readonly join: ListenAddress;
}

/** Where the controller listens, as written to `run/endpoints.json`. */
export interface ControllerEndpoints {
  /** `http://HOST:PORT` */
  readonly admin: string;
  /** `HOST:PORT` as workers dial it (the advertised host, the bound port). */
  readonly worker: string;
  readonly join: string;
}

/** The admin API: each group of routes gets only what it works with. */
export interface AdminAppOptions {
  readonly log: Logger;
  readonly metrics: ControllerMetrics;
  /** Looked up on every request, so a credential revoked since the start counts at once. */
  readonly operators: OperatorStore;
  readonly sessions: OperatorSessions;
  /**
   * Serve over TLS with this server identity: `cert` requires a pinned operator client
   * certificate, `token` a bearer token. Without it, plain HTTP with bearer tokens.
   */
  readonly tls?: { readonly mode: AdminAuthMode; readonly material: TlsMaterial } | undefined;
  readonly system: SystemRouteOptions;
  readonly hosts: HostRouteOptions;
  readonly eligibility: EligibilityRouteOptions;
  readonly enroll: EnrollRouteOptions;
  readonly audit: AuditRouteOptions;
  readonly deploy: DeployRouteOptions;
  readonly operations: Operations;
  /** `ops resume` / `ops cancel` of halted rollouts. */
  readonly rollouts?: RolloutControl | undefined;
  /** Release pushes (`POST /v1/update`); its updater also answers `GET /v1/releases`. */
  readonly update: UpdateRouteOptions;
  /** The fleet event log (list, SSE stream) and its webhooks. */
  readonly events: FleetEvents;
  readonly diagnose: DiagnoseDeps;
  readonly logs: LogRoutesOptions;
  /** Approvals: their routes, and the gate operator changes pass through. */
  readonly approvals: ApprovalGate;
  readonly backup: BackupRouteOptions;
  readonly webSessions: WebSessions;
  /** The built dashboard's folder (`dist/ui`); without it `GET /` says the dashboard is not built. */
  readonly dashboardDir?: string | undefined;
}

/** The admin app and every route it registered, as `METHOD URL` (HEAD included). */
export function createAdminApp(o: AdminAppOptions): HttpApp & { readonly corralRoutes: readonly string[] } {
  const base = {
    log: o.log,
    listener: 'admin',
    bodyLimit: MAX_ADMIN_BODY_BYTES,
    metrics: o.metrics,
    coerceTypes: true,
  };
  const tls = o.tls;
  // The routes use only the request and reply, never the server: over TLS they are the same.
  const app: HttpApp = tls
    ? createHttpsApp({
        ...base,
        https:
          tls.mode === 'cert'
            ? {
                ca: tls.material.caPem,
                cert: tls.material.certPem,
                key: tls.material.keyPem,
                requestCert: true,
                rejectUnauthorized: true,
                minVersion: 'TLSv1.2',
              }
            : { cert: tls.material.certPem, key: tls.material.keyPem, minVersion: 'TLSv1.2' },
      })
    : createHttpApp(base);
  const routes: string[] = [];
  app.addHook('onRoute', (route) => {
    for (const method of [route.method].flat()) routes.push(`${method} ${route.url}`);
  });
  app.addHook('onSend', async (_request, reply) => {
    reply.headers(SECURITY_HEADERS);
  });
  void app.register(adminAuth, {
    mode: tls?.mode ?? 'token',
    operators: o.operators,
    sessions: o.sessions,
    webSessions: o.webSessions,
  });
  void app.register(dashboardAssets, { dir: o.dashboardDir });
  void app.register(adminSessionRoutes, {
    operators: o.operators,
    webSessions: o.webSessions,
    mode: tls?.mode ?? 'token',
    secure: tls !== undefined,
  });
  void app.register(adminOperatorRoutes, { operators: o.operators, gate: o.approvals });
  void app.register(adminApprovalRoutes, { approvals: o.approvals.store });
  void app.register(adminSystemRoutes, o.system);
  void app.register(adminHostRoutes, o.hosts);
  void app.register(adminEligibilityRoutes, o.eligibility);
  void app.register(adminEnrollRoutes, o.enroll);
  void app.register(adminAuditRoutes, o.audit);
  void app.register(adminDeployRoutes, o.deploy);
  void app.register(adminRestartRoutes, { deployer: o.deploy.deployer });
  void app.register(adminOpsRoutes, { operations: o.operations, rollouts: o.rollouts });
  void app.register(adminUpdateRoutes, o.update);
  void app.register(adminReleasesRoutes, { updater: o.update.updater });
  void app.register(adminRollbackRoutes, {
    updater: o.update.updater,
    readDb: o.hosts.readDb,
    gate: o.approvals,
  });
  void app.register(adminEventRoutes, { events: o.events });
  void app.register(adminNotifyRoutes, { webhooks: o.events.webhooks });
  void app.register(adminDiagnoseRoutes, o.diagnose);
  void app.register(adminLogRoutes, o.logs);
  void app.register(adminBackupRoutes, o.backup);
  return Object.assign(app, { corralRoutes: routes });
}

/** The worker API (mutual TLS): heartbeats, renewals, bundle confirmations, wipe reports. */
export interface WorkerAppOptions {
  readonly log: Logger;
  readonly metrics: ControllerMetrics;
  /** The server identity; `certPem` is the leaf and the CA, so `agent join` finds the CA. */
  readonly tls: TlsMaterial;
  readonly pins: PinRegistry;
  /** Every accepted connection is tracked, so a revocation closes it. */
  readonly sockets: LiveSockets;
  readonly heartbeat: HeartbeatRouteOptions;
  readonly renewal: Renewal;
  readonly enrollment: Enrollment;
  readonly wipe: WipeRoutesOptions;
  /** The session ticket key, kept across restarts and rotated (ticket-keys.ts). */
  readonly ticketKeys: TicketKeys;
}

export function createWorkerApp(o: WorkerAppOptions): HttpsApp {
  const app = createHttpsApp({
    log: o.log,
    listener: 'worker',
    bodyLimit: MAX_WORKER_BODY_BYTES,
    metrics: o.metrics,
    coerceTypes: false,
    sharedRequestLogger: true,
    keepAliveTimeoutMs: WORKER_KEEP_ALIVE_TIMEOUT_MS,
    https: {
      ca: o.tls.caPem,
      cert: o.tls.certPem,
      key: o.tls.keyPem,
      requestCert: true,
      rejectUnauthorized: true,
      minVersion: 'TLSv1.2',
      ticketKeys: o.ticketKeys.current(),
      sessionTimeout: WORKER_TLS_SESSION_TIMEOUT_S,
      sessionIdContext: WORKER_TLS_SESSION_ID_CONTEXT,
    },
  });
  o.ticketKeys.onRotate((key) => app.server.setTicketKeys(key));
  app.server.on('secureConnection', (socket: TLSSocket) => {
    o.metrics.workerTlsHandshake(socket.isSessionReused());
    o.sockets.track(socket);
  });
  const expired = trackWorkerRefusals({
    server: app.server,
    pins: o.pins,
    metrics: o.metrics,
    log: o.log.child({ component: 'worker-tls' }),
  });
  void app.register(workerAuth, { pins: o.pins, onExpired: expired });
  void app.register(heartbeatRoute, o.heartbeat);
  void app.register(renewRoute, { renewal: o.renewal });
  void app.register(bundleWrittenRoute, { enrollment: o.enrollment });
  void app.register(wipeRoutes, o.wipe);
  return app;
}

/** The join listener: TLS without client certificates, `POST /v1/join` only. */
export function createJoinApp(o: {
  readonly log: Logger;
  readonly metrics: ControllerMetrics;
  readonly tls: TlsMaterial;
  readonly enrollment: Enrollment;
}): HttpsApp {
  const app = createHttpsApp({
    log: o.log,
    listener: 'join',
    bodyLimit: MAX_WORKER_BODY_BYTES,
    metrics: o.metrics,
    coerceTypes: false,
    https: { cert: o.tls.certPem, key: o.tls.keyPem, minVersion: 'TLSv1.2' },
  });
  void app.register(joinRoute, { enrollment: o.enrollment });
  return app;
}

/** The three listeners, each closable in the two steps of the controller's shutdown. */
export interface ControllerApps {
  readonly admin: HttpApp & { readonly corralRoutes: readonly string[] };
  /** Whether the admin API is served over TLS. */
  readonly adminTls: boolean;
  readonly worker: HttpsApp;
  readonly join: HttpsApp;
  readonly closers: readonly ListenerClose[];
  /** Operator credentials and the admin connections each authenticated (for revocations elsewhere). */
  readonly operators: Pick<OperatorStore, 'isInactive'>;
  readonly operatorSessions: OperatorSessions;
  /** Set by listenApps. */
  listening: boolean;
}

/** The controller's parts the three APIs serve; createControllerApps gives each route its share. */
export interface ControllerServices {
  readonly db: Kysely<ControllerDatabase>;
  /** Admin reads (lists, details, counts, admin tokens): the read-only connection, or `db`. */
  readonly readDb: Kysely<ControllerDatabase>;
  /** Where `db` lives (undefined: the state dir's `corral.db`). */
  readonly database?: DatabaseTarget | undefined;
  readonly clock: Clock;
  readonly log: Logger;
  readonly identity: Pick<ControllerIdentity, 'ca' | 'server'> & Partial<Pick<ControllerIdentity, 'paths'>>;
  readonly pins: MutablePinRegistry;
  readonly keeper: PinKeeper;
  readonly audit: AuditLog;
  readonly tokens: TokenStore;
  readonly enrollment: Enrollment;
  readonly renewal: Renewal;
  readonly client: WorkerClient;
  readonly writer: HeartbeatWriter;
  readonly budget: HeartbeatBudget;
  readonly clocks: ClockOffsets;
  /** The live controllers' addresses, listed in heartbeat answers to agents that ask. */
  readonly controllers?: (() => Promise<ControllerList | undefined>) | undefined;
  readonly sockets: LiveSockets;
  /** The worker listener's TLS session ticket key. */
  readonly ticketKeys: TicketKeys;
  readonly metrics: ControllerMetrics;
  readonly deployer: Deployer;
  readonly releaseUpdater: ReleaseUpdater;
  readonly intervalMs: number;
  readonly live: () => Liveness;
  /** The join listener, host:port, as workers should dial it. */
  joinAddress(): string;
  readonly decommissionWaitMs: number;
  readonly uploadDir: string;
  readonly logDir?: string | undefined;
  readonly fleetEvents: FleetEvents;
  /** Serve the admin API over TLS (`cert`: pinned operator certificates; `token`: bearer tokens). */
  readonly adminTls?: AdminAuthMode | undefined;
  /** The built dashboard's folder, served at `/` by the admin listener. */
  readonly dashboardDir?: string | undefined;
  /** Which actions wait for other operators' approval; the admin actions' executors register here. */
  readonly approvals: ApprovalGate;
  /** With backups configured: the backup taken before a decommission or a teardown of everything. */
  readonly backupFirst?: BackupFirst | undefined;
  /** Told the operator credential ids revoked here, after the change committed. */
  readonly onOperatorRevoked?: ((credentialIds: readonly string[]) => void) | undefined;
}

/** Builds the admin, worker and join APIs; nothing listens until listenApps. */
export function createControllerApps(s: ControllerServices): ControllerApps {
  const { db, readDb, clock, log, pins, audit, writer, metrics, enrollment, live } = s;
  const sessions = createOperatorSessions();
  const operators = createOperatorStore({
    db,
    readDb,
    audit,
    clock,
    ca: s.identity.ca,
    sessions,
    ...(s.onOperatorRevoked && { onRevoked: s.onOperatorRevoked }),
  });
  const webSessions = createWebSessions({ db, readDb, audit, clock });
  const decommission = {
    db,
    pins,
    client: s.client,
    audit,
    writer,
    sockets: s.sockets,
    clock,
    live,
    log: log.child({ component: 'admin' }),
    waitMs: s.decommissionWaitMs,
  };
  const approvals = s.approvals;
  const destructive = createDestructiveActions({
    decommission,
    deployer: s.deployer,
    backupFirst: s.backupFirst,
  });
  // Each approved request runs as its requester's operation (reschedule and heal: controller.ts).
  registerAdminExecutors(approvals.store, {
    destructive,
    updater: s.releaseUpdater,
    operators,
  });
  const eligibility = { db, audit, clock, deployer: s.deployer };
  approvals.store.register('drain', {
    run: async (body, actor) => {
      const b = body as DrainApprovalBody;
      return drainHost(eligibility, b.name, b.deadlineMs, actor);
    },
  });
  const admin = createAdminApp({
    log: log.child({ component: 'admin-api' }),
    metrics,
    operators,
    sessions,
    webSessions,
    dashboardDir: s.dashboardDir,
    ...(s.adminTls !== undefined && { tls: { mode: s.adminTls, material: s.identity.server } }),
    system: { readDb, live, writer, pins, metrics },
    hosts: {
      readDb,
      live,
      destructive,
      check: { db, pins, client: s.client },
      gate: approvals,
    },
    eligibility: { ...eligibility, gate: approvals },
    approvals,
    enroll: {
      db,
      enrollment,
      tokens: s.tokens,
      caFingerprint: s.identity.ca.fingerprint,
      joinAddress: () => s.joinAddress(),
    },
    audit: { audit },
    deploy: { deployer: s.deployer, destructive, db, live, gate: approvals },
    operations: s.deployer.operations,
    rollouts: createRolloutControl({
      db,
      operations: s.deployer.operations,
      audit,
      log: log.child({ component: 'rollouts' }),
      resumers: {
        deploy: (id, halted, actor) => s.deployer.resume(id, halted, actor),
        update: (id, halted, actor) => s.releaseUpdater.resume(id, halted, actor),
      },
    }),
    update: { updater: s.releaseUpdater, uploadDir: s.uploadDir, gate: approvals },
    events: s.fleetEvents,
    diagnose: { db, pins, client: s.client, audit },
    logs: { readDb, logDir: s.logDir },
    backup: {
      paths: s.identity.paths,
      database: s.database,
      audit,
      clock,
      log: log.child({ component: 'backup' }),
    },
  });
  const worker = createWorkerApp({
    log: log.child({ component: 'worker-api' }),
    metrics,
    tls: s.identity.server,
    pins,
    sockets: s.sockets,
    heartbeat: {
      writer,
      budget: s.budget,
      keeper: s.keeper,
      metrics,
      clock,
      intervalMs: s.intervalMs,
      clocks: s.clocks,
      ...(s.controllers !== undefined && { controllers: s.controllers }),
    },
    renewal: s.renewal,
    enrollment,
    wipe: { db, audit, clock, log: log.child({ component: 'wipe' }) },
    ticketKeys: s.ticketKeys,
  });
  const join = createJoinApp({
    log: log.child({ component: 'join-api' }),
    metrics,
    tls: s.identity.server,
    enrollment,
  });
  // listenerClose adds a hook, so it comes before anything listens.
  return {
    admin,
    adminTls: s.adminTls !== undefined,
    worker,
    join,
    closers: [listenerClose(admin), listenerClose(worker), listenerClose(join)],
    operators,
    operatorSessions: sessions,
    listening: false,
  };
}

/**
 * Binds the three listeners and says where they are: the admin URL as bound, the worker and
 * join addresses with `advertiseHost` (default: the listen host, or 127.0.0.1 for a wildcard).
 * Throws CORRAL_ERR_CLOSED once the shutdown began, CORRAL_ERR_CONFLICT when called twice.
 */
export async function listenApps(
  apps: ControllerApps,
  on: ControllerListen,
  advertiseHost: string | undefined,
): Promise<ControllerEndpoints> {
  if (apps.closers.some((c) => c.closing)) throw new CorralError(ErrorCode.CLOSED, 'controller is closed');
  if (apps.listening) throw new CorralError(ErrorCode.CONFLICT, 'controller is already listening');
  if (!apps.adminTls && !isLoopbackHost(on.admin.host)) {
    throw new CorralError(
      ErrorCode.VALIDATION,
      `the admin API is plain HTTP and may listen only on loopback, not ${on.admin.host}; serve it over TLS with --admin-tls (pinned operator certificates) or --admin-tls=token, or listen on 127.0.0.1`,
    );
  }
  apps.listening = true;
  await apps.admin.listen({ host: on.admin.host, port: on.admin.port });
  await apps.worker.listen({ host: on.worker.host, port: on.worker.port, backlog: FLEET_LISTEN_BACKLOG });
  await apps.join.listen({ host: on.join.host, port: on.join.port });
  const port = (app: HttpApp | HttpsApp): number => (app.server.address() as AddressInfo).port;
  const advertised = (listenHost: string): string =>
    advertiseHost ?? (isWildcardHost(listenHost) ? '127.0.0.1' : listenHost);
  const adminBound = apps.admin.server.address() as AddressInfo;
  return {
    admin: `${apps.adminTls ? 'https' : 'http'}://${formatHostPort(adminBound.address, adminBound.port)}`,
    worker: formatHostPort(advertised(on.worker.host), port(apps.worker)),
    join: formatHostPort(advertised(on.join.host), port(apps.join)),
  };
}

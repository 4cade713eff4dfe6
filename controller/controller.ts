import type { AddressInfo } from 'node:net';
import { rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TLSSocket } from 'node:tls';
import type { Kysely } from 'kysely';
import type { Logger } from 'pino';
import {
  MAX_ADMIN_BODY_BYTES,
  MAX_WORKER_BODY_BYTES,
  DEFAULT_HEARTBEAT_INTERVAL_MS,
} from '../protocol/constants.js';
import { formatHostPort, isWildcardHost } from '../kit/host-port.js';
import { CorralError, ErrorCode } from '../protocol/errors.js';
import { createWorkerClient, type WorkerClient } from './agent-client.js';
import { createAuditLog, type AuditLog } from './audit/audit-log.js';
import { createDeployer, type Deployer } from './deploy/deployer.js';
import { systemClock, type Clock } from './clock.js';
import type { ControllerDatabase } from './db/schema.js';
import { DEFAULT_SELF_DESTRUCT_WAIT_MS } from './fleet/decommission.js';
import { createClockOffsets } from './fleet/clock-offsets.js';
import { createEnrollment } from './fleet/enrollment.js';
import { createJoinPolicy, type JoinPolicyOptions } from './fleet/join-policy.js';
import {
  checkEventRetention,
  DEFAULT_EVENT_RETENTION,
  startEventPruner,
  type EventRetention,
} from './fleet/event-retention.js';
import {
  createHeartbeatBudget,
  DEFAULT_HEARTBEAT_BUDGET,
  type HeartbeatBudgetLimits,
} from './fleet/heartbeat-budget.js';
import { createHeartbeatWriter, type HeartbeatWriter } from './fleet/heartbeat-writer.js';
import { createRenewal } from './fleet/renewal.js';
import { createTokenStore } from './fleet/token-store.js';
import { adminAuth } from './http/admin-auth.js';
import type { AdminContext } from './http/admin-context.js';
import {
  createHttpApp,
  createHttpsApp,
  WORKER_KEEP_ALIVE_TIMEOUT_MS,
  type HttpApp,
  type HttpsApp,
} from './http/fastify-base.js';
import { createLiveSockets, type LiveSockets } from './http/live-sockets.js';
import { createMetrics, type ControllerMetrics } from './http/metrics.js';
import { trackWorkerRefusals } from './http/tls-refusals.js';
import { workerAuth } from './http/worker-auth.js';
import { createPinKeeper, type PinKeeper } from './pins/pin-keeper.js';
import { createPinRegistry, type PinRegistry } from './pins/pin-registry.js';
import { loadActivePins, loadDecommissionedPins } from './pins/pin-store.js';
import { adminAuditRoutes } from './routes/admin-audit.js';
import { adminDeployRoutes } from './routes/admin-deploy.js';
import { adminOpsRoutes } from './routes/admin-ops.js';
import { adminReleasesRoutes } from './routes/admin-releases.js';
import { adminUpdateRoutes } from './routes/admin-update.js';
import { createReleaseUpdater, type ReleaseUpdater } from './release/update-operation.js';
import { adminEnrollRoutes } from './routes/admin-enroll.js';
import { adminHostRoutes } from './routes/admin-hosts.js';
import { adminSystemRoutes } from './routes/admin-system.js';
import { joinRoute } from './routes/join.js';
import { bundleWrittenRoute } from './routes/worker-bundle-written.js';
import { heartbeatRoute } from './routes/worker-heartbeat.js';
import { renewRoute } from './routes/worker-renew.js';
import { wipeRoutes } from './routes/worker-wipe.js';
import type { ControllerIdentity } from './state/load-state.js';
// fleet events, webhooks and diagnose (issue 15)
import { createFleetEvents, type FleetEventsOptions } from './events/fleet-events.js';
import { adminEventRoutes } from './routes/admin-events.js';
import { adminNotifyRoutes } from './routes/admin-notify.js';
import { adminDiagnoseRoutes } from './routes/admin-diagnose.js';

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

export interface ControllerOptions {
  readonly db: Kysely<ControllerDatabase>;
  /**
   * A read-only connection to the same database (openReadConnection) for admin reads (host
   * list, host detail, metrics), so they never hold the connection heartbeats are written
   * on. Default: `db`. The caller owns and closes it.
   */
  readonly readDb?: Kysely<ControllerDatabase>;
  readonly identity: Pick<ControllerIdentity, 'ca' | 'server' | 'client'>;
  readonly log: Logger;
  readonly clock?: Clock;
  readonly heartbeatIntervalMs?: number;
  /** How long heartbeats wait to be written together, in ms. */
  readonly heartbeatFlushMs?: number;
  /** Per-host heartbeat budget (default DEFAULT_HEARTBEAT_BUDGET); `'unlimited'` for benchmarks. */
  readonly heartbeatBudget?: HeartbeatBudgetLimits | 'unlimited';
  /** Lifecycle events kept per host (defaults: DEFAULT_EVENT_RETENTION). */
  readonly eventRetention?: Partial<EventRetention>;
  /** Host that bundles and join hints name (default: the listen host, or 127.0.0.1 for a wildcard). */
  readonly advertiseHost?: string;
  readonly decommissionWaitMs?: number;
  /** Deploy dispatch: hosts called at once, and how long one host may take (ms). */
  readonly deploy?: { readonly concurrency?: number; readonly applyTimeoutMs?: number };
  /**
   * Private directory (0700, created on use) for release uploads in flight. Default: a
   * per-process directory under the system temp dir; `serve` passes one under the state dir.
   */
  readonly uploadDir?: string;
  /** Release pushes: hosts updated at once, and how long one host may take (ms). */
  readonly update?: { readonly concurrency?: number; readonly timeoutMs?: number };
  /** What a joining worker may claim (default: any address). A bad CIDR throws VALIDATION. */
  readonly joinPolicy?: JoinPolicyOptions;
  /** Fleet event retention, webhook delivery and liveness sweeps (defaults in controller/events/). */
  readonly fleetEvents?: FleetEventsOptions;
}

export interface Controller extends AsyncDisposable {
  /** Who may connect: every listener that accepts workers checks it and follows revocations. */
  readonly pins: PinRegistry;
  readonly keeper: PinKeeper;
  readonly audit: AuditLog;
  /** mTLS client for agents and updaters (controller-client identity, pins checked). */
  readonly workerClient: WorkerClient;
  readonly metrics: ControllerMetrics;
  /** Deploys, teardowns and their operations. */
  readonly deployer: Deployer;
  /** Release pushes to updaters (`update` operations) and their release views. */
  readonly releaseUpdater: ReleaseUpdater;
  readonly db: Kysely<ControllerDatabase>;
  readonly heartbeatIntervalMs: number;
  /** Set once `listen` has bound everything. */
  readonly endpoints: ControllerEndpoints | undefined;
  /** Adds an address to every bundle manifest from now on (the syslog listener). */
  advertise(name: 'syslog', hostPort: string): void;
  listen(on: ControllerListen): Promise<ControllerEndpoints>;
  /** Stops accepting, drains in-flight requests, writes queued heartbeats. Idempotent. */
  close(): Promise<void>;
}

export async function createController(options: ControllerOptions): Promise<Controller> {
  const { db, identity, log } = options;
  const clock = options.clock ?? systemClock;
  const intervalMs = options.heartbeatIntervalMs ?? DEFAULT_HEARTBEAT_INTERVAL_MS;
  const pins = createPinRegistry(clock, await loadActivePins(db), await loadDecommissionedPins(db));
  const credentials = await db
    .selectFrom('admin_tokens')
    .select(['name', 'hash'])
    .where('revoked_at', 'is', null)
    .execute();
  const audit = createAuditLog({ db, clock });
  const tokens = createTokenStore({ db, audit, clock });
  const keeper = createPinKeeper({ db, pins, clock, log: log.child({ component: 'pins' }) });
  const retention: EventRetention = { ...DEFAULT_EVENT_RETENTION, ...options.eventRetention };
  checkEventRetention(retention);
  const budget = createHeartbeatBudget(options.heartbeatBudget ?? DEFAULT_HEARTBEAT_BUDGET, clock);
  const metrics = createMetrics();
  // fleet events (issue 15)
  const fleetEvents = createFleetEvents({
    db,
    readDb: options.readDb ?? db,
    clock,
    log: log.child({ component: 'fleet-events' }),
    audit,
    intervalMs,
    ...(options.fleetEvents && { options: options.fleetEvents }),
  });
  metrics.addSource(() => fleetEvents.metricsLines());
  pins.onRevoked((hostId) => fleetEvents.hostRevoked(hostId));
  const writer: HeartbeatWriter = createHeartbeatWriter({
    db,
    clock,
    log: log.child({ component: 'heartbeats' }),
    retention,
    onEventsPruned: (n) => metrics.eventsPruned(n),
    observer: fleetEvents.heartbeats, // fleet events (issue 15)
    ...(options.heartbeatFlushMs !== undefined ? { flushMs: options.heartbeatFlushMs } : {}),
  });
  const workerClient = createWorkerClient(identity.client);
  const clocks = createClockOffsets(log.child({ component: 'clocks' }));
  pins.onRevoked((hostId) => clocks.forget(hostId));
  const live = () => ({ nowMs: clock.now(), intervalMs, clockOf: (hostId: string) => clocks.get(hostId) });
  const deployer = createDeployer({
    db,
    client: workerClient,
    pins,
    audit,
    clock,
    log: log.child({ component: 'deploy' }),
    live: () => ({ nowMs: clock.now(), intervalMs }),
    events: fleetEvents.sink, // fleet events (issue 15)
    ...options.deploy,
  });
  const releaseUpdater = createReleaseUpdater({
    db,
    operations: deployer.operations,
    audit,
    pins,
    tls: identity.client,
    log: log.child({ component: 'update' }),
    events: fleetEvents.sink, // fleet events (issue 15)
    ...options.update,
  });
  const uploadDir = options.uploadDir ?? join(tmpdir(), `corral-uploads-${process.pid}`);
  // Operations a previous controller left running can never finish now.
  await deployer.recover();
  await fleetEvents.start(); // fleet events (issue 15)
  const pruner = startEventPruner({
    db,
    clock,
    retention,
    log: log.child({ component: 'events' }),
    onPruned: (n) => metrics.eventsPruned(n),
  });
  const sockets: LiveSockets = createLiveSockets(pins);
  const advertised: { syslog?: string } = {};
  let endpoints: ControllerEndpoints | undefined;
  let apps: { admin: HttpApp; worker: HttpsApp; join: HttpsApp } | undefined;
  let closing: Promise<void> | undefined;

  const enrollment = createEnrollment({
    db,
    ca: identity.ca,
    pins,
    audit,
    tokens,
    clock,
    log: log.child({ component: 'enrollment' }),
    controllerClientFingerprint: identity.client.fingerprint,
    advertised: () => ({ controller: endpoints?.worker ?? '127.0.0.1:0', ...advertised }),
    joinPolicy: createJoinPolicy(options.joinPolicy),
    events: fleetEvents.sink, // fleet events (issue 15)
  });
  const renewal = createRenewal({
    db,
    ca: identity.ca,
    pins,
    audit,
    clock,
    log: log.child({ component: 'renewal' }),
  });
  const ctx: AdminContext = {
    db,
    readDb: options.readDb ?? db,
    clock,
    log: log.child({ component: 'admin' }),
    pins,
    audit,
    tokens,
    enrollment,
    client: workerClient,
    writer,
    sockets,
    metrics,
    caFingerprint: identity.ca.fingerprint,
    live,
    joinAddress: () => endpoints?.join ?? '127.0.0.1:0',
    decommissionWaitMs: options.decommissionWaitMs ?? DEFAULT_SELF_DESTRUCT_WAIT_MS,
  };

  function buildApps() {
    const admin = createHttpApp({
      log: log.child({ component: 'admin-api' }),
      listener: 'admin',
      bodyLimit: MAX_ADMIN_BODY_BYTES,
      metrics,
      coerceTypes: true,
    });
    void admin.register(adminAuth, { credentials: () => credentials });
    void admin.register(adminSystemRoutes, { ctx });
    void admin.register(adminHostRoutes, { ctx });
    void admin.register(adminEnrollRoutes, { ctx });
    void admin.register(adminAuditRoutes, { ctx });
    void admin.register(adminDeployRoutes, { deployer, db, live: () => ctx.live() });
    void admin.register(adminOpsRoutes, { operations: deployer.operations });
    void admin.register(adminUpdateRoutes, { updater: releaseUpdater, uploadDir });
    void admin.register(adminReleasesRoutes, { updater: releaseUpdater });
    // fleet events (issue 15)
    void admin.register(adminEventRoutes, { events: fleetEvents });
    void admin.register(adminNotifyRoutes, { webhooks: fleetEvents.webhooks });
    void admin.register(adminDiagnoseRoutes, { db, pins, client: workerClient, audit });

    // The chain (leaf + CA) is presented so `agent join` can find the CA its pin names.
    const worker = createHttpsApp({
      log: log.child({ component: 'worker-api' }),
      listener: 'worker',
      bodyLimit: MAX_WORKER_BODY_BYTES,
      metrics,
      coerceTypes: false,
      sharedRequestLogger: true,
      keepAliveTimeoutMs: WORKER_KEEP_ALIVE_TIMEOUT_MS,
      https: {
        ca: identity.server.caPem,
        cert: identity.server.certPem,
        key: identity.server.keyPem,
        requestCert: true,
        rejectUnauthorized: true,
        minVersion: 'TLSv1.2',
      },
    });
    worker.server.on('secureConnection', (socket: TLSSocket) => sockets.track(socket));
    const expired = trackWorkerRefusals({
      server: worker.server,
      pins,
      metrics,
      log: log.child({ component: 'worker-tls' }),
    });
    void worker.register(workerAuth, { pins, onExpired: expired });
    void worker.register(heartbeatRoute, { writer, budget, keeper, metrics, clock, intervalMs, clocks });
    void worker.register(renewRoute, { renewal });
    void worker.register(bundleWrittenRoute, { enrollment });
    void worker.register(wipeRoutes, { db, audit, clock, log: log.child({ component: 'wipe' }) });

    const join = createHttpsApp({
      log: log.child({ component: 'join-api' }),
      listener: 'join',
      bodyLimit: MAX_WORKER_BODY_BYTES,
      metrics,
      coerceTypes: false,
      https: { cert: identity.server.certPem, key: identity.server.keyPem, minVersion: 'TLSv1.2' },
    });
    void join.register(joinRoute, { enrollment });
    return { admin, worker, join };
  }

  const hostPortOf = (app: HttpApp | HttpsApp, listenHost: string): string => {
    const bound = app.server.address() as AddressInfo;
    const host = options.advertiseHost ?? (isWildcardHost(listenHost) ? '127.0.0.1' : listenHost);
    return formatHostPort(host, bound.port);
  };

  async function close(): Promise<void> {
    closing ??= (async () => {
      if (apps) await Promise.allSettled([apps.admin.close(), apps.worker.close(), apps.join.close()]);
      await writer.close();
      await fleetEvents.close(); // fleet events (issue 15)
      await pruner.close();
      await keeper.settle();
      sockets.dispose();
      await deployer.close();
      await workerClient.close();
      if (options.uploadDir === undefined) await rm(uploadDir, { recursive: true, force: true });
    })();
    return closing;
  }

  return {
    pins,
    keeper,
    audit,
    workerClient,
    metrics,
    deployer,
    releaseUpdater,
    db,
    heartbeatIntervalMs: intervalMs,
    get endpoints() {
      return endpoints;
    },
    advertise(name, hostPort) {
      advertised[name] = hostPort;
    },
    async listen(on) {
      if (apps) throw new CorralError(ErrorCode.CONFLICT, 'controller is already listening');
      apps = buildApps();
      await apps.admin.listen({ host: on.admin.host, port: on.admin.port });
      await apps.worker.listen({ host: on.worker.host, port: on.worker.port });
      await apps.join.listen({ host: on.join.host, port: on.join.port });
      const adminBound = apps.admin.server.address() as AddressInfo;
      endpoints = {
        admin: `http://${formatHostPort(adminBound.address, adminBound.port)}`,
        worker: hostPortOf(apps.worker, on.worker.host),
        join: hostPortOf(apps.join, on.join.host),
      };
      log.info({ endpoints }, 'controller listening');
      return endpoints;
    },
    close,
    [Symbol.asyncDispose]: close,
  };
}

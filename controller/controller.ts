import type { DatabaseTarget } from './db/database-target.js';
import { rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Kysely } from 'kysely';
import type { Logger } from 'pino';
import { DEFAULT_HEARTBEAT_INTERVAL_MS } from '../protocol/constants.js';
import { runShutdown, type PhaseOutcome, type ShutdownPhase } from '../kit/shutdown.js';
import { createWorkerClient, type WorkerClient } from './agent-client.js';
import { createAuditLog, type AuditLog } from './audit/audit-log.js';
import { isoAt, systemClock, type Clock } from './clock.js';
import { controllerShutdownPhases } from './controller-shutdown.js';
import type { ControllerDatabase } from './db/schema.js';
import { createDeployer, type Deployer } from './deploy/deployer.js';
import { startScheduler } from './deploy/scheduler.js';
import type { RetryPolicy } from './deploy/failed-retries.js';
import { createClockOffsets } from './fleet/clock-offsets.js';
import { DEFAULT_SELF_DESTRUCT_WAIT_MS } from './fleet/decommission.js';
import { createEnrollment } from './fleet/enrollment.js';
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
import { createHeartbeatWriter } from './fleet/heartbeat-writer.js';
import { createJoinPolicy, type JoinPolicyOptions } from './fleet/join-policy.js';
import { createRenewal } from './fleet/renewal.js';
import { createTokenStore } from './fleet/token-store.js';
import {
  createControllerApps,
  listenApps,
  type ControllerEndpoints,
  type ControllerListen,
} from './http/apps.js';
import { createLiveSockets } from './http/live-sockets.js';
import { createMetrics, type ControllerMetrics } from './http/metrics.js';
import { createPinKeeper, type PinKeeper } from './pins/pin-keeper.js';
import { createPinRegistry, type PinRegistry } from './pins/pin-registry.js';
import { loadActivePins, loadDecommissionedPins } from './pins/pin-store.js';
import { createReleaseUpdater, type ReleaseUpdater } from './release/update-operation.js';
import type { ControllerIdentity } from './state/load-state.js';
import { createFleetEvents, type FleetEventsOptions } from './events/fleet-events.js';
import { createApprovalGate } from './approvals/approval-gate.js';
import { createApprovalStore, type ApprovalConfig } from './approvals/approval-store.js';
import { registerSchedulerExecutors, schedulerApprovals } from './approvals/scheduler-approvals.js';
import { startBackupSchedule, type BackupConfig } from './state/backup-schedule.js';
import { CorralError, ErrorCode } from '../protocol/errors.js';
import { createClusterLink, type ClusterLink } from './cluster/cluster-link.js';
import { createClusterSync } from './cluster/cluster-sync.js';
import { startLeaderRecovery } from './cluster/leader-recovery.js';
import { createControllerListSource } from './cluster/controller-list.js';
import {
  peerWorkerAddresses,
  publishControllerAddress,
  withdrawControllerAddress,
} from './cluster/controller-addresses.js';

import type { AdminAuthMode } from './http/admin-auth.js';
import { openTicketKeys } from './http/ticket-keys.js';
import { TLS_TICKET_KEY_FILE } from '../protocol/tls-ticket-key.js';
export type { AdminAuthMode } from './http/admin-auth.js';
export type { ControllerEndpoints, ControllerListen, ListenAddress } from './http/apps.js';

/** A field left out or undefined takes its default. */
export interface ControllerOptions {
  readonly db: Kysely<ControllerDatabase>;
  /**
   * A read-only connection to the same database (openReadConnection) for admin reads (host
   * list, host detail, metrics), so they never hold the connection heartbeats are written
   * on. Default: `db`. The caller owns and closes it.
   */
  readonly readDb?: Kysely<ControllerDatabase> | undefined;
  /** Where `db` lives, for `POST /v1/backup` (default: the state dir's `corral.db`). */
  readonly database?: DatabaseTarget | undefined;
  /** With `paths` (as loadControllerIdentity gives it), `POST /v1/backup` backs that state dir up. */
  readonly identity: Pick<ControllerIdentity, 'ca' | 'server' | 'client'> &
    Partial<Pick<ControllerIdentity, 'paths'>>;
  readonly log: Logger;
  readonly clock?: Clock | undefined;
  readonly heartbeatIntervalMs?: number | undefined;
  /** How long heartbeats wait to be written together, in ms. */
  readonly heartbeatFlushMs?: number | undefined;
  /** Per-host heartbeat budget (default DEFAULT_HEARTBEAT_BUDGET); `'unlimited'` for benchmarks. */
  readonly heartbeatBudget?: HeartbeatBudgetLimits | 'unlimited' | undefined;
  /** Lifecycle events kept per host (defaults: DEFAULT_EVENT_RETENTION). */
  readonly eventRetention?: Partial<EventRetention> | undefined;
  /** Host that bundles and join hints name (default: the listen host, or 127.0.0.1 for a wildcard). */
  readonly advertiseHost?: string | undefined;
  readonly decommissionWaitMs?: number | undefined;
  /**
   * Deploy dispatch: hosts called at once, how long one host may take (ms), and the health
   * gate's defaults (deployer.ts: `minHealthyMs`, `healthStartMs`).
   */
  readonly deploy?:
    | {
        readonly concurrency?: number;
        readonly applyTimeoutMs?: number;
        readonly minHealthyMs?: number;
        readonly healthStartMs?: number;
      }
    | undefined;
  /**
   * The scheduler: how long a host may be offline before its services move (ms; null: never,
   * default DEFAULT_RESCHEDULE_AFTER_MS), and how often it re-places the spec (ms).
   */
  readonly schedule?:
    | {
        readonly rescheduleAfterMs?: number | null;
        readonly tickMs?: number;
        /** Retries of services their agent gave up on (default 120 s cooldown, 5 tries). */
        readonly retry?: RetryPolicy;
      }
    | undefined;
  /**
   * Private directory (0700, created on use) for release uploads in flight. Default: a
   * per-process directory under the system temp dir; `serve` passes one under the state dir.
   */
  readonly uploadDir?: string | undefined;
  /** The syslog listener's ingest directory, read by `GET /v1/logs` (default: none, no lines). */
  readonly logDir?: string | undefined;
  /** Release pushes: hosts updated at once, and how long one host may take (ms). */
  readonly update?: { readonly concurrency?: number; readonly timeoutMs?: number } | undefined;
  /** What a joining worker may claim (default: any address). A bad CIDR throws VALIDATION. */
  readonly joinPolicy?: JoinPolicyOptions | undefined;
  /** Fleet event retention, webhook delivery and liveness sweeps (defaults in controller/events/). */
  readonly fleetEvents?: FleetEventsOptions | undefined;
  /**
   * Serve the admin API over TLS with the server certificate: `cert` accepts only pinned
   * operator client certificates, `token` bearer tokens. Without it the admin API is plain
   * HTTP and refuses to listen off loopback.
   */
  readonly adminTls?: AdminAuthMode | undefined;
  /** The built dashboard's folder (`dist/ui`), served at `/` by the admin listener. */
  readonly dashboardDir?: string | undefined;
  /** Actions that wait for other operators' approval (`approvals:` in controller.yaml); default none. */
  readonly approvals?: ApprovalConfig | undefined;
  /**
   * Backups the controller writes itself into a directory: on a schedule when it has an
   * interval, and before every decommission and teardown of everything (refused when that
   * backup fails). Needs `identity.paths` (VALIDATION otherwise).
   */
  readonly backups?: BackupConfig | undefined;
  /**
   * On PostgreSQL: how often a follower tries to become leader, how often the pins are
   * re-read from the database in case a revocation's notification was missed, and how often
   * the leader looks for operations of controllers that died (ms).
   */
  readonly cluster?:
    | { readonly leaderRetryMs?: number; readonly resyncMs?: number; readonly recoverEveryMs?: number }
    | undefined;
}

export interface Controller extends AsyncDisposable {
  /** Who may connect: every listener that accepts workers checks it and follows revocations. */
  readonly pins: PinRegistry;
  readonly keeper: PinKeeper;
  readonly audit: AuditLog;
  /** mTLS client for agents and updaters (controller-client identity, pins checked). */
  readonly workerClient: WorkerClient;
  readonly metrics: ControllerMetrics;
  /** Leadership of background work among controllers sharing the database (always, on SQLite). */
  readonly cluster: ClusterLink;
  /** Deploys, teardowns and their operations. */
  readonly deployer: Deployer;
  /** Release pushes to updaters (`update` operations) and their release views. */
  readonly releaseUpdater: ReleaseUpdater;
  readonly db: Kysely<ControllerDatabase>;
  readonly heartbeatIntervalMs: number;
  /** Every admin route, `METHOD URL`, as the admin app registered it (for the scope table's test). */
  readonly adminRoutes: readonly string[];
  /** Set once `listen` has bound everything. */
  readonly endpoints: ControllerEndpoints | undefined;
  /** Adds an address to every bundle manifest from now on (the syslog listener). */
  advertise(name: 'syslog', hostPort: string): void;
  /**
   * Records in the database where this controller is reached (its worker API and syslog
   * listener, once listening), so bundles written by the others list it too; prunes the rows of
   * controllers no longer connected. `withdrawAddress` removes it again (clean shutdown).
   */
  publishAddress(): Promise<void>;
  withdrawAddress(): Promise<void>;
  listen(on: ControllerListen): Promise<ControllerEndpoints>;
  /**
   * The controller's shutdown, in order: stop-accepting (listeners), abort-operations (the
   * root signal aborts deploys and update pushes, which record their end), drain (requests in
   * flight, queued heartbeats), close-clients (connections to workers). Each has its own
   * timeout and runs once, however often the list is run. A caller that owns more (the
   * database, the log) runs these first and its own phases after (controller/serve.ts).
   */
  readonly shutdownPhases: readonly ShutdownPhase[];
  /** Runs `shutdownPhases`; a second call waits for the first and gets the same outcomes. */
  close(): Promise<readonly PhaseOutcome[]>;
}

export async function createController(options: ControllerOptions): Promise<Controller> {
  const { db, identity, log } = options;
  const readDb = options.readDb ?? db;
  const clock = options.clock ?? systemClock;
  const intervalMs = options.heartbeatIntervalMs ?? DEFAULT_HEARTBEAT_INTERVAL_MS;
  /** Aborted by the abort-operations phase: every long operation takes this signal. */
  const root = new AbortController();
  if (options.backups && !identity.paths)
    throw new CorralError(ErrorCode.VALIDATION, 'backups need the state dir of the controller');
  const decommissioned = await loadDecommissionedPins(db);
  const pins = createPinRegistry(clock, await loadActivePins(db), decommissioned);
  const peers = options.database?.kind === 'postgres';
  const clusterLog = log.child({ component: 'cluster' });
  const sync = createClusterSync({
    db,
    pins,
    revoked: decommissioned.map((p) => p.hostId),
    clock,
    log: clusterLog,
    peers,
  });
  const cluster = createClusterLink({
    database: options.database,
    log: clusterLog,
    onChange: (change) => sync.take(change),
    onResync: () => sync.resync(),
    ...(options.cluster?.leaderRetryMs !== undefined && { leaderRetryMs: options.cluster.leaderRetryMs }),
    ...(options.cluster?.resyncMs !== undefined && { resyncMs: options.cluster.resyncMs }),
  });
  sync.announceThrough(cluster);
  const leader = (): boolean => cluster.isLeader();
  const audit = createAuditLog({ db, clock });
  const tokens = createTokenStore({ db, audit, clock });
  const keeper = createPinKeeper({ db, pins, clock, log: log.child({ component: 'pins' }) });
  const retention: EventRetention = { ...DEFAULT_EVENT_RETENTION, ...options.eventRetention };
  checkEventRetention(retention);
  const metrics = createMetrics();
  const fleetEvents = createFleetEvents({
    db,
    readDb: options.readDb ?? db,
    clock,
    log: log.child({ component: 'fleet-events' }),
    audit,
    intervalMs,
    options: {
      ...options.fleetEvents,
      leader,
      peers,
      ...(peers && { onWebhookChanged: (id: string) => void cluster.announce({ kind: 'webhooks', id }) }),
    },
  });
  sync.attach({ webhooks: fleetEvents });
  metrics.addSource(() => fleetEvents.metricsLines());
  metrics.addSource(() => cluster.metricsLines());
  pins.onRevoked((hostId) => fleetEvents.hostRevoked(hostId));
  const writer = createHeartbeatWriter({
    db,
    clock,
    log: log.child({ component: 'heartbeats' }),
    retention,
    onEventsPruned: (n) => metrics.eventsPruned(n),
    observer: fleetEvents.heartbeats,
    flushMs: options.heartbeatFlushMs,
    ...(peers && {
      onFirstWrite: (hostIds: readonly string[]) => {
        for (const id of hostIds) void cluster.announce({ kind: 'services', id });
      },
    }),
  });
  sync.attach({ heartbeats: writer });
  const workerClient = createWorkerClient(identity.client);
  const clocks = createClockOffsets(log.child({ component: 'clocks' }));
  pins.onRevoked((hostId) => clocks.forget(hostId));
  const live = () => ({ nowMs: clock.now(), intervalMs, clockOf: (hostId: string) => clocks.get(hostId) });
  const approvalStore = createApprovalStore({
    db,
    audit,
    clock,
    policy: options.approvals?.policy ?? {},
    ttlMs: options.approvals?.ttlMs,
    log: log.child({ component: 'approvals' }),
    events: fleetEvents.sink,
  });
  const approvals = createApprovalGate(approvalStore, { updateAllOnly: options.approvals?.updateAllOnly });
  const deployer = createDeployer({
    db,
    client: workerClient,
    pins,
    audit,
    clock,
    log: log.child({ component: 'deploy' }),
    live: () => ({ nowMs: clock.now(), intervalMs }),
    signal: root.signal,
    events: fleetEvents.sink,
    approvals: schedulerApprovals(approvalStore),
    controllerId: cluster.id,
    ...options.deploy,
    ...(options.schedule?.rescheduleAfterMs !== undefined && {
      rescheduleAfterMs: options.schedule.rescheduleAfterMs,
    }),
    ...(options.schedule?.retry !== undefined && { retry: options.schedule.retry }),
  });
  registerSchedulerExecutors(approvalStore, deployer);
  metrics.addSource(() => [
    '# HELP corral_services_pending Service instances no host can take yet (placed once one fits).',
    '# TYPE corral_services_pending gauge',
    `corral_services_pending ${deployer.pendingCount()}`,
    '# HELP corral_services_escalated Service instances that failed after every retry by the controller.',
    '# TYPE corral_services_escalated gauge',
    `corral_services_escalated ${deployer.escalatedCount()}`,
  ]);
  const uploadDir = options.uploadDir ?? join(tmpdir(), `corral-uploads-${process.pid}`);
  const releaseUpdater = createReleaseUpdater({
    db,
    operations: deployer.operations,
    audit,
    pins,
    tls: identity.client,
    log: log.child({ component: 'update' }),
    signal: root.signal,
    events: fleetEvents.sink,
    haltedDir: join(uploadDir, 'halted'),
    ...options.update,
  });
  // Operations a controller that is gone left running can never finish now: the leader ends
  // them when it takes the lead (at start, or when the leader before it died), never those
  // of a controller still running. A follower's start leaves them alone.
  const recovery = startLeaderRecovery({
    cluster,
    deployer,
    takeOver: () => fleetEvents.takeOver(),
    log: log.child({ component: 'cluster' }),
    signal: root.signal,
    peers,
    ...(options.cluster?.recoverEveryMs !== undefined && { everyMs: options.cluster.recoverEveryMs }),
  });
  await cluster.firstCheck();
  const scheduler = startScheduler({
    deployer,
    log: log.child({ component: 'scheduler' }),
    signal: root.signal,
    leader,
    ...(options.schedule?.tickMs !== undefined && { tickMs: options.schedule.tickMs }),
  });
  await fleetEvents.start();
  const pruner = startEventPruner({
    db,
    clock,
    retention,
    log: log.child({ component: 'events' }),
    onPruned: (n) => metrics.eventsPruned(n),
    leader,
  });
  const backups =
    options.backups && identity.paths
      ? startBackupSchedule({
          config: options.backups,
          paths: identity.paths,
          database: options.database,
          audit,
          clock,
          log: log.child({ component: 'backup' }),
          signal: root.signal,
          leader,
        })
      : undefined;
  if (backups) metrics.addSource(() => backups.metricsLines());
  const sockets = createLiveSockets(pins);
  const ticketKeys = await openTicketKeys({
    path: identity.paths && join(identity.paths.runDir, TLS_TICKET_KEY_FILE),
    caFingerprint: identity.ca.fingerprint,
    clock,
    log: log.child({ component: 'worker-tls' }),
  });
  const advertised: { syslog?: string } = {};
  let endpoints: ControllerEndpoints | undefined;
  const enrollment = createEnrollment({
    db,
    ca: identity.ca,
    pins,
    audit,
    tokens,
    clock,
    log: log.child({ component: 'enrollment' }),
    controllerClientFingerprint: identity.client.fingerprint,
    advertised: async () => {
      const own = endpoints?.worker ?? '127.0.0.1:0';
      if (!peers) return { controller: own, ...advertised };
      try {
        const live = await cluster.liveControllers();
        return {
          controller: own,
          peers: await peerWorkerAddresses(db, cluster.id, live, own),
          ...advertised,
        };
      } catch (err: unknown) {
        log.warn(
          { err },
          "cannot read the other controllers' addresses; this bundle names this controller only",
        );
        return { controller: own, ...advertised };
      }
    },
    joinPolicy: createJoinPolicy(options.joinPolicy),
    events: fleetEvents.sink,
  });
  const renewal = createRenewal({
    db,
    ca: identity.ca,
    pins,
    audit,
    clock,
    log: log.child({ component: 'renewal' }),
  });

  const apps = createControllerApps({
    db,
    readDb,
    database: options.database,
    clock,
    log,
    identity,
    pins,
    keeper,
    audit,
    tokens,
    enrollment,
    renewal,
    client: workerClient,
    writer,
    budget: createHeartbeatBudget(options.heartbeatBudget ?? DEFAULT_HEARTBEAT_BUDGET, clock),
    clocks,
    controllers: createControllerListSource({
      db,
      self: cluster.id,
      peers,
      live: () => cluster.liveControllers(),
      own: () => endpoints && { worker: endpoints.worker, ...advertised },
      now: () => clock.now(),
      log: log.child({ component: 'cluster' }),
    }),
    sockets,
    ticketKeys,
    metrics,
    deployer,
    releaseUpdater,
    intervalMs,
    live,
    joinAddress: () => endpoints?.join ?? '127.0.0.1:0',
    decommissionWaitMs: options.decommissionWaitMs ?? DEFAULT_SELF_DESTRUCT_WAIT_MS,
    uploadDir,
    logDir: options.logDir,
    fleetEvents,
    adminTls: options.adminTls,
    dashboardDir: options.dashboardDir,
    approvals,
    backupFirst: backups && ((action, target, actor) => backups.backupFirst(action, target, actor)),
    ...(peers && {
      onOperatorRevoked: (ids: readonly string[]) => {
        for (const id of ids) void cluster.announce({ kind: 'operator', id });
      },
    }),
  });
  sync.attach({ operators: apps.operators, operatorSessions: apps.operatorSessions });

  const shutdownPhases = controllerShutdownPhases({
    listeners: apps.closers,
    root,
    operations: [scheduler, deployer, releaseUpdater, recovery, ticketKeys, ...(backups ? [backups] : [])],
    writers: [writer, fleetEvents, pruner, { close: () => keeper.settle() }, cluster, sync],
    clients: [
      { close: async () => sockets.dispose() },
      workerClient,
      {
        close: () =>
          options.uploadDir !== undefined
            ? Promise.resolve()
            : rm(uploadDir, { recursive: true, force: true }),
      },
    ],
  });
  let closing: Promise<readonly PhaseOutcome[]> | undefined;
  const close = (): Promise<readonly PhaseOutcome[]> => (closing ??= runShutdown(shutdownPhases));

  return {
    pins,
    keeper,
    audit,
    workerClient,
    metrics,
    cluster,
    deployer,
    releaseUpdater,
    db,
    heartbeatIntervalMs: intervalMs,
    adminRoutes: apps.admin.corralRoutes,
    get endpoints() {
      return endpoints;
    },
    advertise(name, hostPort) {
      advertised[name] = hostPort;
    },
    async publishAddress() {
      if (!endpoints) throw new CorralError(ErrorCode.CONFLICT, 'the controller is not listening yet');
      await publishControllerAddress(
        db,
        cluster.id,
        { worker: endpoints.worker, ...advertised },
        await cluster.liveControllers(),
        isoAt(clock.now()),
      );
    },
    withdrawAddress: () => withdrawControllerAddress(db, cluster.id),
    async listen(on) {
      endpoints = await listenApps(apps, on, options.advertiseHost);
      log.info({ endpoints }, 'controller listening');
      return endpoints;
    },
    shutdownPhases,
    close,
    [Symbol.asyncDispose]: async () => void (await close()),
  };
}

import { X509Certificate } from 'node:crypto';
import { rm } from 'node:fs/promises';
import { isIP } from 'node:net';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { ENDPOINTS_FILE } from '../protocol/constants.js';
import { writeEndpointsFile } from '../kit/endpoints-file.js';
import { isWildcardHost } from '../kit/host-port.js';
import { runShutdown, type PhaseOutcome } from '../kit/shutdown.js';
import { CorralError, ErrorCode } from '../protocol/errors.js';
import {
  createController,
  type Controller,
  type ControllerListen,
  type ControllerOptions,
} from './controller.js';
import type { JoinPolicyOptions } from './fleet/join-policy.js';
import { getSetting, SETTING_ADDRESSES } from './state/settings.js';
import { loadControllerIdentity, type ControllerIdentity } from './state/load-state.js';
import type { DatabaseTarget } from './db/database-target.js';
import { openReadConnection, type ControllerDb } from './db/open-database.js';
import { openControllerState } from './state/open-state.js';
import { decodeJsonColumn, StoredNames } from './db/json-column.js';
import { statePaths } from './state/state-paths.js';

/** Something else that listens beside the controller (the syslog listener), started after it. */
export interface ExtraListener {
  /** Key in `run/endpoints.json`, e.g. `syslog`. */
  readonly name: string;
  /** Gets the controller and the identity serve loaded (so nothing reads it twice). */
  start(
    controller: Controller,
    identity: ControllerIdentity,
  ): Promise<{
    /** Written to `run/endpoints.json` under `name`. */
    readonly endpoint: string;
    close(): Promise<void>;
  }>;
}

export interface ServeOptions extends ControllerListen {
  readonly stateDir: string;
  /** The database, when it is not the state dir's `corral.db` (`--database`). */
  readonly database?: DatabaseTarget | undefined;
  readonly log: Logger;
  readonly heartbeatIntervalMs?: number | undefined;
  /** The scheduler (`--reschedule-after`). */
  readonly schedule?: ControllerOptions['schedule'];
  /** The deploy health gate (`--min-healthy`). */
  readonly deploy?: ControllerOptions['deploy'];
  readonly heartbeatBudget?: ControllerOptions['heartbeatBudget'];
  readonly eventRetention?: ControllerOptions['eventRetention'];
  readonly fleetEvents?: ControllerOptions['fleetEvents'];
  readonly extras?: readonly ExtraListener[];
  /** What joining workers may claim (`--join-allowed-cidr`; default: any address). */
  readonly joinPolicy?: JoinPolicyOptions | undefined;
  /** Serve the admin API over TLS (`cert`: pinned operator certificates; `token`: bearer tokens). */
  readonly adminTls?: ControllerOptions['adminTls'];
  readonly approvals?: ControllerOptions['approvals'];
  /** The built dashboard's folder, served at `/` by the admin listener. */
  readonly dashboardDir?: string | undefined;
  /** The controller's own backups (`backup:` in controller.yaml). */
  readonly backups?: ControllerOptions['backups'];
  /**
   * The host this controller tells workers to dial (`--advertise`; default: the first
   * `init --address`). It must be a name or IP its server certificate carries, since workers
   * check the hostname: one of the `init --address` values, localhost or a loopback IP.
   */
  readonly advertiseHost?: string | undefined;
  /** Several controllers on one PostgreSQL database (`--cluster-resync`). */
  readonly cluster?: ControllerOptions['cluster'];
}

export interface ServingController {
  readonly controller: Controller;
  readonly endpoints: Record<string, string>;
  /**
   * Shutdown in phases, each with its own timeout: the controller's (stop-accepting,
   * abort-operations, drain, close-clients), then close-<extra> per extra listener,
   * withdraw-address (its row in controller_addresses), close-database, remove-endpoints,
   * flush-logs. A second call waits for the first and gets
   * the same outcomes.
   */
  close(): Promise<PhaseOutcome[]>;
}

/** Phases serve runs after the controller's own, in ms. */
const CLOSE_DATABASE_TIMEOUT_MS = 10_000;
const FLUSH_LOGS_TIMEOUT_MS = 5_000;
const WITHDRAW_TIMEOUT_MS = 5_000;

/**
 * Refuses an advertised host the controller's server certificate does not name: workers check
 * the hostname, so a bundle naming it would point them at a controller they must refuse.
 */
function assertCertificateCovers(identity: ControllerIdentity, host: string): void {
  const cert = new X509Certificate(identity.server.certPem);
  const covered = isIP(host) !== 0 ? cert.checkIP(host) !== undefined : cert.checkHost(host) !== undefined;
  if (!covered) {
    throw new CorralError(
      ErrorCode.VALIDATION,
      `--advertise ${host}: the controller's server certificate does not name it (its names: ${cert.subjectAltName ?? 'none'}); give it to the first controller init --address`,
    );
  }
}

/**
 * `corral controller serve`: checks and loads the state made by `init` (the same CA,
 * certificates and tokens on every start; a state file that existed and is now missing or
 * damaged is CORRAL_ERR_STATE_DAMAGED and nothing starts), opens the database, listens, and
 * writes `run/endpoints.json`.
 */
export async function serveController(options: ServeOptions): Promise<ServingController> {
  const db = await openControllerState(options.stateDir, options.database);
  let identity: ControllerIdentity;
  let readDb: ControllerDb;
  try {
    identity = await loadControllerIdentity(options.stateDir);
    readDb = await openReadConnection(options.database ?? statePaths(options.stateDir).database);
  } catch (e: unknown) {
    await db.destroy();
    throw e;
  }
  const started: { name: string; close(): Promise<void> }[] = [];
  let controller: Controller | undefined;
  try {
    const addresses = decodeJsonColumn(StoredNames, (await getSetting(db, SETTING_ADDRESSES)) ?? '[]', {
      table: 'settings',
      column: 'value',
      row: SETTING_ADDRESSES,
    });
    if (options.advertiseHost !== undefined) assertCertificateCovers(identity, options.advertiseHost);
    controller = await createController({
      db,
      readDb,
      database: options.database,
      identity,
      log: options.log,
      uploadDir: join(options.stateDir, 'uploads'),
      logDir: join(options.stateDir, 'logs', 'hosts'),
      heartbeatIntervalMs: options.heartbeatIntervalMs,
      schedule: options.schedule,
      deploy: options.deploy,
      advertiseHost: options.advertiseHost ?? addresses[0],
      joinPolicy: options.joinPolicy,
      heartbeatBudget: options.heartbeatBudget,
      eventRetention: options.eventRetention,
      fleetEvents: options.fleetEvents,
      adminTls: options.adminTls,
      approvals: options.approvals,
      dashboardDir: options.dashboardDir,
      backups: options.backups,
      cluster: options.cluster,
    });
    const bound = await controller.listen(options);
    if (addresses.length === 0 && isWildcardHost(options.worker.host)) {
      options.log.warn(
        { worker: bound.worker },
        'no --address was given to init: bundles name 127.0.0.1, which only this machine can reach',
      );
    }
    const endpoints: Record<string, string> = { ...bound };
    for (const extra of options.extras ?? []) {
      const running = await extra.start(controller, identity);
      started.push({ name: extra.name, close: () => running.close() });
      endpoints[extra.name] = running.endpoint;
    }
    try {
      await controller.publishAddress();
    } catch (err: unknown) {
      options.log.warn(
        { err },
        "cannot record this controller's address; bundles the other controllers write will not list it",
      );
    }
    await writeEndpointsFile(options.stateDir, endpoints);
    const running = controller;
    let closing: Promise<PhaseOutcome[]> | undefined;
    return {
      controller: running,
      endpoints,
      close: () =>
        (closing ??= runShutdown([
          ...running.shutdownPhases,
          ...started.map((s) => ({ name: `close-${s.name}`, run: () => s.close() })),
          { name: 'withdraw-address', run: () => running.withdrawAddress(), timeoutMs: WITHDRAW_TIMEOUT_MS },
          {
            name: 'close-database',
            run: async () => {
              await readDb.destroy();
              await db.destroy();
            },
            timeoutMs: CLOSE_DATABASE_TIMEOUT_MS,
          },
          {
            name: 'remove-endpoints',
            run: () => rm(join(options.stateDir, ENDPOINTS_FILE), { force: true }),
          },
          {
            name: 'flush-logs',
            run: () => new Promise<void>((resolve) => options.log.flush(() => resolve())),
            timeoutMs: FLUSH_LOGS_TIMEOUT_MS,
          },
        ])),
    };
  } catch (e: unknown) {
    for (const s of started.reverse())
      await s.close().catch(() => undefined /* already failing: keep the first error */);
    await controller?.close();
    await readDb.destroy();
    await db.destroy();
    throw e;
  }
}

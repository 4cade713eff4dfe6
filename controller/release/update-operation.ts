import type { Kysely } from 'kysely';
import type { Logger } from 'pino';
import type { TlsMaterial } from '../../pki/index.js';
import {
  ADMIN_RELEASE_HISTORY_ENTRIES,
  type AdminHostReleases,
  type AdminUpdateHostResult,
  type AdminUpdateResponse,
} from '../../protocol/admin-update.js';
import { CorralError, ErrorCode } from '../../protocol/errors.js';
import type { AuditLog } from '../audit/audit-log.js';
import type { ControllerDatabase } from '../db/schema.js';
import { findHostByName, type HostRow } from '../fleet/host-store.js';
import type { Operations } from '../deploy/operations.js';
import { operationState } from '../deploy/rollout.js';
import type { PinRegistry } from '../pins/pin-registry.js';
import { pushRelease, type HostPushResult, type PushProgress } from './push.js';
import { progressLine } from './update-progress.js';
import { readReleaseFile } from './read-release.js';
import { fetchReleases, type UpdaterTarget } from './updater-client.js';
import { mapConcurrent } from '../../kit/concurrency.js';
import type { FleetEventSink, NewFleetEvent } from '../events/event-log.js';

type Db = Kysely<ControllerDatabase>;

export interface ReleaseUpdaterOptions {
  readonly db: Db;
  readonly operations: Operations;
  readonly audit: AuditLog;
  readonly pins: PinRegistry;
  /** The controller-client identity and the CA. */
  readonly tls: TlsMaterial;
  readonly log: Logger;
  /** Hosts updated at the same time. */
  readonly concurrency?: number | undefined;
  /** Per host, for one update (upload to confirmed health or rollback), in ms. */
  readonly timeoutMs?: number | undefined;
  /** Per host, for `releases`, in ms. */
  readonly queryTimeoutMs?: number;
  /**
   * The controller's shutdown: once it aborts, a push in flight stops (its connections are cut,
   * its operation ends `failed`) and `update` is refused.
   */
  readonly signal: AbortSignal;
  /** `release.updated` / `release.rolled_back` per host, with that host's step (fleet events). */
  readonly events?: FleetEventSink;
}

export interface UpdateRequest {
  /** A release tarball on the controller's disk (the caller removes it). */
  readonly file: string;
  readonly sha256: string;
  /** Host names; empty with `all`. */
  readonly hosts: readonly string[];
  readonly all: boolean;
  readonly includeSelf: boolean;
  readonly force: boolean;
  readonly dryRun: boolean;
  readonly actor: string;
}

export interface ReleaseUpdater {
  /** Pushes a release to hosts as an operation with one step per host; one update at a time. */
  update(r: UpdateRequest): Promise<AdminUpdateResponse>;
  /** Each active host's (or one host's) releases and recent history, asked of its updater. */
  releases(host?: string): Promise<AdminHostReleases[]>;
  /**
   * Refuses new updates (CORRAL_ERR_UNAVAILABLE) and waits for the one in flight to end and
   * record its outcome; it ends early only when `signal` aborts. Idempotent.
   */
  close(): Promise<void>;
}

const QUERY_CONCURRENCY = 16;
const DEFAULT_QUERY_TIMEOUT_MS = 10_000;
const FINE = new Set(['updated', 'self-updated']);

interface Resolved {
  readonly row: HostRow;
  readonly target: UpdaterTarget;
}

const describe = (e: unknown): string => (e instanceof Error ? e.message : String(e)).slice(0, 2000);

/** Why a push stopped half-way: the controller is shutting down. */
const SHUTDOWN_REASON = 'the controller shut down during the update';

export function createReleaseUpdater(o: ReleaseUpdaterOptions): ReleaseUpdater {
  const { db, log, signal } = o;
  let running: Promise<unknown> | undefined;
  let closed = false;

  function targetOf(row: HostRow): UpdaterTarget {
    const fingerprint = o.pins.fingerprintsFor(row.id, 'updater')[0];
    if (fingerprint === undefined) {
      throw new CorralError(ErrorCode.CONFLICT, `host ${row.name} has no active updater pin`);
    }
    return {
      hostName: row.name,
      address: row.address,
      updaterPort: row.updater_port,
      updaterFingerprint: fingerprint,
    };
  }

  async function resolve(names: readonly string[], all: boolean): Promise<Resolved[]> {
    let rows: HostRow[];
    if (all) {
      rows = await db
        .selectFrom('hosts')
        .selectAll()
        .where('decommissioned_at', 'is', null)
        .orderBy('name')
        .execute();
    } else {
      rows = [];
      for (const name of new Set(names)) {
        const row = await findHostByName(db, name);
        if (!row) throw new CorralError(ErrorCode.NOT_FOUND, `no host named ${name}`);
        if (row.decommissioned_at !== null) {
          throw new CorralError(ErrorCode.CONFLICT, `host ${name} is decommissioned`);
        }
        rows.push(row);
      }
    }
    if (rows.length === 0) throw new CorralError(ErrorCode.NOT_FOUND, 'no hosts to update');
    return rows.map((row) => ({ row, target: targetOf(row) }));
  }

  const view = (r: HostPushResult): AdminUpdateHostResult => ({
    host: r.hostName,
    outcome: r.outcome,
    version: r.current,
    reason: r.reason,
  });

  async function update(r: UpdateRequest): Promise<AdminUpdateResponse> {
    if (closed || signal.aborted) throw new CorralError(ErrorCode.UNAVAILABLE, 'controller is shutting down');
    if (running) throw new CorralError(ErrorCode.CONFLICT, 'an update is already running; retry later');
    const run = runUpdate(r);
    running = run;
    try {
      return await run;
    } finally {
      running = undefined;
    }
  }

  async function runUpdate(r: UpdateRequest): Promise<AdminUpdateResponse> {
    let info;
    try {
      info = await readReleaseFile(r.file, r.sha256);
    } catch (e: unknown) {
      if (e instanceof CorralError) throw e;
      throw new CorralError(ErrorCode.VALIDATION, `body: not a Corral release: ${describe(e)}`);
    }
    const version = info.manifest.version;
    const hosts = await resolve(r.hosts, r.all);
    const targets = hosts.map((h) => h.target);
    const base = {
      file: r.file,
      sha256: info.sha256,
      tls: o.tls,
      force: r.force,
      includeSelf: r.includeSelf,
    };
    const limits = { concurrency: o.concurrency, timeoutMs: o.timeoutMs };
    if (r.dryRun) {
      const report = await pushRelease({ ...base, ...limits, targets, dryRun: true, signal });
      const results = report.results.map(view);
      return {
        operationId: null,
        dryRun: true,
        version,
        sha256: info.sha256,
        hosts: results,
        ok: results.every((h) => h.outcome === 'dry-run'),
      };
    }

    const idOf = new Map(hosts.map((h) => [h.row.name, h.row.id]));
    const summary = { services: 0, removed: 0, hosts: hosts.length };
    const target = `release ${version}`;
    const names = hosts.map((h) => h.row.name);
    const op = await db.transaction().execute(async (trx) => {
      const recorder = await o.operations.begin(
        trx,
        {
          kind: 'update',
          actor: r.actor,
          target,
          summary: { ...summary, failedHosts: 0 },
          steps: hosts.map((h) => ({ hostId: h.row.id, hostName: h.row.name, generation: 0, services: 0 })),
        },
        [
          {
            level: 'info',
            message:
              `update to ${version} (sha256 ${info.sha256.slice(0, 12)}, ${info.bytes} bytes) of ` +
              `${hosts.length} hosts started by ${r.actor}` +
              `${r.includeSelf ? ', updaters included' : ''}${r.force ? ', forced' : ''}`,
          },
        ],
      );
      await o.audit.append(
        {
          actor: r.actor,
          action: 'update',
          target: version,
          details: {
            operationId: recorder.id,
            sha256: info.sha256,
            hosts: names,
            includeSelf: r.includeSelf,
            force: r.force,
          },
        },
        trx,
      );
      return recorder;
    });
    log.info({ operationId: op.id, version, hosts: hosts.length }, 'update started');

    // Progress lands in the log in order; a failed write is logged, not fatal to the push.
    const pending: Promise<void>[] = [];
    const onProgress = (p: PushProgress): void => {
      const hostId = idOf.get(p.hostName);
      if (hostId === undefined) return;
      const write = progressLine(p, hostId);
      if (!write) return;
      const event = releaseEvent(p.result, { id: hostId, name: p.hostName }, version, op.id);
      const events = o.events;
      pending.push(
        op
          .record(write.lines, write.step, event && events ? (trx) => events.append(trx, [event]) : undefined)
          .catch((err: unknown) => log.error({ err, operationId: op.id }, 'update progress not recorded')),
      );
    };
    let report;
    try {
      report = await pushRelease({ ...base, ...limits, targets, onProgress, signal });
      // Hosts cut off half-way may still finish on their own; the next push sees where they are.
      if (signal.aborted) throw new CorralError(ErrorCode.UNAVAILABLE, SHUTDOWN_REASON);
    } catch (e: unknown) {
      await Promise.all(pending);
      await op
        .finish(
          'failed',
          { ...summary, failedHosts: hosts.length },
          { level: 'error', message: `update broke off: ${describe(e)}` },
        )
        .catch((err: unknown) => log.error({ err, operationId: op.id }, 'operation could not be closed'));
      throw e;
    }
    await Promise.all(pending);
    const results = report.results.map(view);
    const failed = results.filter((h) => !FINE.has(h.outcome) || h.version !== version).length;
    const state = operationState(hosts.length, failed);
    await op.finish(
      state,
      { ...summary, failedHosts: failed },
      {
        level: failed === 0 ? 'info' : 'error',
        message:
          failed === 0
            ? `update to ${version} ${state}: ${hosts.length} hosts`
            : `update to ${version} ${state}: ${failed} of ${hosts.length} hosts not on ${version}`,
      },
    );
    await o.audit.append({
      actor: r.actor,
      action: 'update-finished',
      target: version,
      details: {
        operationId: op.id,
        outcomes: Object.fromEntries(results.map((h) => [h.host, h.outcome])),
      },
    });
    log.info({ operationId: op.id, version, state, failedHosts: failed }, 'update finished');
    return { operationId: op.id, dryRun: false, version, sha256: info.sha256, hosts: results, ok: report.ok };
  }

  async function releases(host?: string): Promise<AdminHostReleases[]> {
    const hosts = await resolve(host === undefined ? [] : [host], host === undefined).catch((e: unknown) => {
      if (host === undefined && e instanceof CorralError && e.code === ErrorCode.NOT_FOUND) return [];
      throw e;
    });
    return mapConcurrent(hosts, QUERY_CONCURRENCY, async ({ target }): Promise<AdminHostReleases> => {
      try {
        const timeoutMs = o.queryTimeoutMs ?? DEFAULT_QUERY_TIMEOUT_MS;
        const rel = await fetchReleases(target, o.tls, {
          timeoutMs,
          signal: AbortSignal.any([signal, AbortSignal.timeout(timeoutMs)]),
        });
        return {
          host: target.hostName,
          current: rel.current,
          previous: rel.previous,
          updater: rel.updater.version,
          busy: rel.busy,
          history: rel.history.slice(-ADMIN_RELEASE_HISTORY_ENTRIES),
          error: null,
        };
      } catch (e: unknown) {
        return {
          host: target.hostName,
          current: null,
          previous: null,
          updater: null,
          busy: false,
          history: [],
          error: describe(e),
        };
      }
    });
  }

  return {
    update,
    releases,
    async close() {
      closed = true;
      await running?.catch(() => undefined /* the caller of update() gets its error */);
    },
  };
}

/** The fleet event a host's finished push tells: updated (or self-updated), or rolled back. */
function releaseEvent(
  r: HostPushResult | undefined,
  host: { id: string; name: string },
  version: string,
  operationId: string,
): NewFleetEvent | undefined {
  if (!r) return undefined;
  if (r.outcome === 'updated' || r.outcome === 'self-updated') {
    return {
      kind: 'release.updated',
      host,
      operationId,
      data: { version: r.current ?? version, outcome: r.outcome },
    };
  }
  if (r.outcome === 'rolled-back') {
    return {
      kind: 'release.rolled_back',
      host,
      operationId,
      data: { version, current: r.current, reason: r.reason },
    };
  }
  return undefined;
}

import { access, copyFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { Kysely } from 'kysely';
import type { Logger } from 'pino';
import { ensurePrivateDir, type TlsMaterial } from '../../pki/index.js';
import {
  ADMIN_RELEASE_HISTORY_ENTRIES,
  type AdminHostReleases,
  type AdminRollbackResponse,
  type AdminUpdateHostResult,
  type AdminUpdateResponse,
} from '../../protocol/admin-update.js';
import { CorralError, ErrorCode, RemoteError } from '../../protocol/errors.js';
import type { AuditLog } from '../audit/audit-log.js';
import type { ControllerDatabase } from '../db/schema.js';
import { findHostByName, type HostRow } from '../fleet/host-store.js';
import type { OperationRecorder, Operations } from '../deploy/operations.js';
import { forgetHalted, saveHalted } from '../deploy/halted-rollouts.js';
import { resumedPolicy, rolloutPolicy, storedPolicy, type RolloutPolicy } from '../deploy/rollout-plan.js';
import { describePolicy } from '../deploy/rollout-describe.js';
import type { HaltedRollout, RolloutOptions } from '../../protocol/rollout.js';
import type { OperationState } from '../../protocol/operations.js';
import { operationState } from '../deploy/rollout.js';
import type { PinRegistry } from '../pins/pin-registry.js';
import { pushRelease, type HostPushResult } from './push.js';
import { pushInSteps } from './update-rollout.js';
import { readReleaseFile } from './read-release.js';
import {
  DEFAULT_UPDATE_TIMEOUT_MS,
  fetchReleases,
  requestRollback,
  type UpdaterTarget,
} from './updater-client.js';
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
  /** Private directory where a halted update keeps its release until resumed or cancelled. */
  readonly haltedDir: string;
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
  /** Batches, canaries, halting (rollout-plan.ts); defaults for an update when absent. */
  readonly rollout?: RolloutOptions | undefined;
}

export interface ReleaseUpdater {
  /** Pushes a release to hosts as an operation with one step per host; one update at a time. */
  update(r: UpdateRequest): Promise<AdminUpdateResponse>;
  /** Continues a halted update (halted-rollouts.ts): its untouched hosts, as the same operation. */
  resume(operationId: string, halted: HaltedRollout, actor: string): Promise<void>;
  /** Each active host's (or one host's) releases and recent history, asked of its updater. */
  releases(host?: string): Promise<AdminHostReleases[]>;
  /**
   * Asks one host's updater (over its pinned connection) to put its previous release back, as
   * an `update` operation with one step and an audit entry. Unknown host: CORRAL_ERR_NOT_FOUND;
   * nothing to roll back to or updater busy: the updater's code (409); updater unreachable:
   * CORRAL_ERR_UNAVAILABLE with the reason. The operation records each outcome.
   */
  rollback(host: string, actor: string): Promise<AdminRollbackResponse>;
  /**
   * Refuses new updates (CORRAL_ERR_UNAVAILABLE) and waits for the one in flight to end and
   * record its outcome; it ends early only when `signal` aborts. Idempotent.
   */
  close(): Promise<void>;
}

const QUERY_CONCURRENCY = 16;
const DEFAULT_QUERY_TIMEOUT_MS = 10_000;

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

    const summary = { services: 0, removed: 0, hosts: hosts.length };
    const target = `release ${version}`;
    const names = hosts.map((h) => h.row.name);
    const policy = rolloutPolicy('update', hosts.length, r.rollout);
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
          { level: 'info', message: describePolicy(policy) },
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
            rollout: policy,
          },
        },
        trx,
      );
      return recorder;
    });
    log.info({ operationId: op.id, version, hosts: hosts.length }, 'update started');
    const release = {
      file: r.file,
      sha256: info.sha256,
      version,
      includeSelf: r.includeSelf,
      force: r.force,
    };
    const out = await runSteps(op, hosts, policy, release, { total: hosts.length, actor: r.actor, names });
    return {
      operationId: op.id,
      dryRun: false,
      version,
      sha256: info.sha256,
      hosts: [
        ...out.results.map(view),
        ...out.untouched.map((host) => ({
          host,
          outcome: 'untouched' as const,
          version: null,
          reason: null,
        })),
      ],
      ok: out.failed.length === 0 && out.untouched.length === 0,
      state: out.state,
      reason: out.reason,
    };
  }

  /**
   * Runs `hosts` as the policy plans them and ends the operation: `halted` (the release kept
   * for a resume) when a failure stopped it with hosts left; else by the steps of the whole
   * operation (a resumed one counts the hosts its first run sent).
   */
  async function runSteps(
    op: OperationRecorder,
    hosts: readonly Resolved[],
    policy: RolloutPolicy,
    release: NonNullable<HaltedRollout['update']>,
    ctx: { total: number; actor: string; names: readonly string[] },
  ) {
    const { version } = release;
    const summary = { services: 0, removed: 0, hosts: ctx.total };
    let out;
    try {
      out = await pushInSteps({
        op,
        hosts: hosts.map((h) => ({ id: h.row.id, target: h.target })),
        policy,
        file: release.file,
        sha256: release.sha256,
        version,
        tls: o.tls,
        force: release.force,
        includeSelf: release.includeSelf,
        timeoutMs: o.timeoutMs,
        signal,
        log,
        events: o.events,
        releaseEvent: (res, host) => releaseEvent(res, host, version, op.id),
      });
      // Hosts cut off half-way may still finish on their own; the next push sees where they are.
      if (signal.aborted) throw new CorralError(ErrorCode.UNAVAILABLE, SHUTDOWN_REASON);
    } catch (e: unknown) {
      await op
        .finish(
          'failed',
          { ...summary, failedHosts: hosts.length },
          { level: 'error', message: `update broke off: ${describe(e)}` },
        )
        .catch((err: unknown) => log.error({ err, operationId: op.id }, 'operation could not be closed'));
      throw e;
    }
    const steps = await o.operations.stepStates(op.id);
    const failed = steps.filter((s) => s.state === 'failed').length;
    let state: OperationState = operationState(steps.length, failed);
    let reason: string | null = null;
    if (out.halted) {
      state = 'halted';
      reason = `halted at ${out.halted.host}: ${out.halted.reason}`.slice(0, 2000);
      const kept = join(o.haltedDir, `${op.id}.tar.gz`);
      await ensurePrivateDir(o.haltedDir);
      if (release.file !== kept) await copyFile(release.file, kept);
      await db
        .transaction()
        .execute((trx) =>
          saveHalted(
            trx,
            op.id,
            'update',
            { policy: storedPolicy(policy), hosts: [...ctx.names], update: { ...release, file: kept } },
            new Date().toISOString(),
          ),
        );
    }
    await op.finish(
      state,
      { ...summary, failedHosts: failed },
      {
        level: failed === 0 && !out.halted ? 'info' : 'error',
        message: out.halted
          ? `update to ${version} halted at ${out.halted.host} (${out.halted.reason}); ` +
            `${out.untouched.length} hosts untouched; \`corral controller ops resume ${op.id}\` or \`ops cancel ${op.id}\``
          : failed === 0
            ? `update to ${version} ${state}: ${ctx.total} hosts`
            : `update to ${version} ${state}: ${failed} of ${ctx.total} hosts not on ${version}`,
      },
      reason,
    );
    await o.audit.append({
      actor: ctx.actor,
      action: 'update-finished',
      target: version,
      details: {
        operationId: op.id,
        state,
        outcomes: Object.fromEntries(out.results.map((h) => [h.hostName, h.outcome])),
        untouched: out.untouched,
      },
    });
    log.info({ operationId: op.id, version, state, failedHosts: failed }, 'update finished');
    return { ...out, state, reason };
  }

  /** Continues a halted update with its untouched hosts (no canary this time), as the same operation. */
  async function resume(id: string, halted: HaltedRollout, actor: string): Promise<void> {
    const release = halted.update;
    if (!release) throw new CorralError(ErrorCode.CONFLICT, `operation ${id} is not an update`);
    if (closed || signal.aborted) throw new CorralError(ErrorCode.UNAVAILABLE, 'controller is shutting down');
    if (running) throw new CorralError(ErrorCode.CONFLICT, 'an update is already running; retry later');
    const run = (async () => {
      await access(release.file).catch(() => {
        throw new CorralError(
          ErrorCode.CONFLICT,
          `the release of operation ${id} is no longer on the controller (it restarted); push it again`,
        );
      });
      const steps = await o.operations.stepStates(id);
      const left = new Set(steps.filter((s) => s.state === 'pending').map((s) => s.hostName));
      const hosts = await resolve(
        halted.hosts.filter((h) => left.has(h)),
        false,
      );
      const op = await o.operations.reopen(id, {
        level: 'info',
        message: `resumed by ${actor}: ${hosts.length} hosts left`,
      });
      await db.transaction().execute((trx) => forgetHalted(trx, id));
      const policy = resumedPolicy(halted.policy);
      await runSteps(op, hosts, policy, release, { total: steps.length, actor, names: halted.hosts });
      if (!(await isHalted(id))) await rm(release.file, { force: true });
    })();
    running = run;
    try {
      await run;
    } finally {
      running = undefined;
    }
  }

  const isHalted = async (id: string): Promise<boolean> =>
    (await db
      .selectFrom('halted_rollouts')
      .select('operation_id')
      .where('operation_id', '=', id)
      .executeTakeFirst()) !== undefined;

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

  async function rollback(host: string, actor: string): Promise<AdminRollbackResponse> {
    if (closed || signal.aborted)
      throw new CorralError(ErrorCode.UNAVAILABLE, 'the controller is shutting down');
    const row = await findHostByName(db, host);
    if (!row || row.decommissioned_at !== null)
      throw new CorralError(ErrorCode.NOT_FOUND, `no host named ${host}`);
    const target = targetOf(row);
    const op = await db.transaction().execute(async (trx) => {
      const recorder = await o.operations.begin(
        trx,
        {
          kind: 'update',
          actor,
          target: `rollback host ${row.name}`,
          summary: { services: 0, removed: 0, hosts: 1, failedHosts: 0 },
          steps: [{ hostId: row.id, hostName: row.name, generation: 0, services: 0 }],
        },
        [{ level: 'info', message: `rollback of ${row.name} to its previous release started by ${actor}` }],
      );
      await o.audit.append(
        { actor, action: 'rollback', target: row.name, details: { operationId: recorder.id } },
        trx,
      );
      return recorder;
    });
    log.info({ operationId: op.id, host: row.name }, 'rollback started');
    await op.record([], { hostId: row.id, state: 'running' });
    const summary = (failedHosts: number) => ({ services: 0, removed: 0, hosts: 1, failedHosts });
    let res;
    try {
      const timeoutMs = o.timeoutMs ?? DEFAULT_UPDATE_TIMEOUT_MS;
      res = await requestRollback(target, o.tls, {
        timeoutMs,
        signal: AbortSignal.any([signal, AbortSignal.timeout(timeoutMs)]),
      });
    } catch (e: unknown) {
      const why = describe(e);
      await op.record([{ level: 'error', host: row.name, message: `rollback failed: ${why}` }], {
        hostId: row.id,
        state: 'failed',
        detail: why,
      });
      await op.finish('failed', summary(1), { level: 'error', message: 'rollback failed' }, why);
      log.warn({ operationId: op.id, host: row.name, err: why }, 'rollback failed');
      // The updater's own refusals (nothing to roll back to, busy) keep their code; anything
      // else means it could not be reached or answered nonsense.
      if (e instanceof RemoteError && e.code === ErrorCode.UPDATER_BUSY)
        throw new CorralError(ErrorCode.UPDATER_BUSY, `${row.name}: ${e.message}`);
      if (e instanceof RemoteError && e.status === 409)
        throw new CorralError(ErrorCode.CONFLICT, `${row.name}: ${e.message}`);
      throw new CorralError(ErrorCode.UNAVAILABLE, `${row.name}: its updater could not roll back: ${why}`);
    }
    const ok = res.outcome === 'rolled-back';
    const detail = ok
      ? `rolled back to ${res.current ?? 'no release'}`
      : `rollback failed: ${res.reason ?? 'unknown'}`;
    const event: NewFleetEvent = {
      kind: 'release.rolled_back',
      host: { id: row.id, name: row.name },
      operationId: op.id,
      data: { version: res.previous, current: res.current, reason: res.reason },
    };
    await op.record(
      [{ level: ok ? 'info' : 'error', host: row.name, message: detail }],
      { hostId: row.id, state: ok ? 'succeeded' : 'failed', detail: detail.slice(0, 2000) },
      ok && o.events ? (trx) => o.events!.append(trx, [event]) : undefined,
    );
    await op.finish(
      ok ? 'succeeded' : 'failed',
      summary(ok ? 0 : 1),
      { level: ok ? 'info' : 'error', message: ok ? 'rollback finished' : 'rollback failed' },
      ok ? null : detail.slice(0, 2000),
    );
    return {
      operationId: op.id,
      host: row.name,
      outcome: res.outcome,
      current: res.current,
      from: res.previous,
      reason: res.reason,
      durationMs: res.durationMs,
    };
  }

  return {
    update,
    resume,
    releases,
    rollback,
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

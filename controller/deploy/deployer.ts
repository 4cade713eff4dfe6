import { createHash } from 'node:crypto';
import type { Kysely } from 'kysely';
import type { Logger } from 'pino';
import {
  duplicateServiceNames,
  hostVariableProblem,
  type DeploymentSpec,
  type DeployResponse,
  type ServiceTeardownRequest,
  type ServiceTeardownResponse,
} from '../../protocol/deployment.js';
import { CorralError, ErrorCode } from '../../protocol/errors.js';
import { MAX_SERVICE_NAME_CHARS } from '../../protocol/service-spec.js';
import type { OperationSummary } from '../../protocol/operations.js';
import type { PlacementChange } from '../../protocol/admin-eligibility.js';
import type { WorkerClient } from '../agent-client.js';
import type { AuditLog } from '../audit/audit-log.js';
import { isoAt, type Clock } from '../clock.js';
import type { ControllerDatabase } from '../db/schema.js';
import type { Liveness } from '../fleet/host-store.js';
import type { PinRegistry } from '../pins/pin-registry.js';
import { DEFAULT_APPLY_TIMEOUT_MS } from './agent-apply.js';
import {
  hostSets,
  loadSnapshot,
  storeDesired,
  type DesiredEntry,
  type FleetSnapshot,
  type HostSet,
} from './desired-state.js';
import type { FleetEventSink } from '../events/event-log.js';
import { createOperations, RESTART_REASON, type OperationRecorder, type Operations } from './operations.js';
import { planDeploy } from './deploy-plan.js';
import { handOver, handoverCandidates, loadRunning, runningKey, type HandedOver } from './handover.js';
import { countPending, forgetIntent, loadIntent, storeIntent, storePending } from './intent-store.js';
import { serviceOfInstance } from './placement.js';
import { restartService } from './service-restart.js';
import type { ServiceRestartRequest, ServiceRestartResponse } from '../../protocol/admin-restart.js';
import {
  decide,
  SCHEDULER_ACTIONS,
  SCHEDULER_ACTOR,
  schedulerTarget,
  type SchedulerAction,
  type SchedulerApprovals,
  approvalOf,
} from './scheduler-actions.js';
import { rollout, type RolloutResult, type StagedRollout } from './rollout.js';
import { DEFAULT_MIN_HEALTHY_MS } from './health-gate.js';
import { resumedPolicy, rolloutPolicy } from './rollout-plan.js';
import { forgetHalted, heldHosts } from './halted-rollouts.js';
import { describePolicy } from './rollout-describe.js';
import type { HaltedRollout, RolloutOptions } from '../../protocol/rollout.js';
import {
  decideRetries,
  DEFAULT_MAX_RETRIES,
  DEFAULT_RETRY_COOLDOWN_MS,
  type RetryPolicy,
} from './failed-retries.js';
import { SingleFlight } from '../../kit/single-flight.js';

/** Hosts sent their sets at once, at most. */
export const DEFAULT_DISPATCH_CONCURRENCY = 16;
/** Deploys and teardowns waiting for the one running, at most; beyond it they are refused. */
const MAX_WAITING = 16;
/** How long a host offline stays placed before its instances move elsewhere, by default. */
export const DEFAULT_RESCHEDULE_AFTER_MS = 5 * 60_000;
/** A host whose heal failed is tried again after this, doubling per failure up to the cap. */
const HEAL_BACKOFF_MAX_MS = 5 * 60_000;

export interface DeployerOptions {
  readonly db: Kysely<ControllerDatabase>;
  readonly client: WorkerClient;
  readonly pins: PinRegistry;
  readonly audit: AuditLog;
  readonly clock: Clock;
  readonly log: Logger;
  live(): Liveness;
  readonly concurrency?: number;
  /** Per host, in ms. */
  readonly applyTimeoutMs?: number;
  /**
   * A deploy's health gate when the operator gives none: how long a host's services must run
   * without a break before its step succeeds (ms, default DEFAULT_MIN_HEALTHY_MS), and how
   * long they may take to come up first (ms, default DEFAULT_HEALTH_START_MS).
   */
  readonly minHealthyMs?: number;
  readonly healthStartMs?: number;
  /**
   * The controller's shutdown: once it aborts, hosts not yet answered fail at once (the
   * operation ends with them failed) and new deploys and teardowns are refused.
   */
  readonly signal: AbortSignal;
  /** Where operations tell that they started and finished (fleet events). */
  readonly events?: FleetEventSink;
  /**
   * How long a host may be offline before the scheduler places its instances elsewhere, in
   * ms; null: never (only decommissioning moves them). Default DEFAULT_RESCHEDULE_AFTER_MS.
   */
  readonly rescheduleAfterMs?: number | null;
  /** What the controller's own reschedule and heal wait for (default: nothing, they run at once). */
  readonly approvals?: SchedulerApprovals | undefined;
  /** Retries of services their agent gave up on (failed-retries.ts). */
  readonly retry?: RetryPolicy;
  /** This controller process (ClusterLink.id), recorded on the operations it runs. */
  readonly controllerId?: string;
}

/** A change of one host that placement sees (see Deployer.preview). */
export interface HostChange {
  readonly labels?: Readonly<Record<string, string>>;
  readonly eligible?: boolean;
  readonly drainDeadlineMs?: number | null;
}

/**
 * A scheduler action operators approved: the pass runs it when it still finds that action
 * for that target, and throws CONFLICT when the placement changed since (a new request follows).
 */
export interface ApprovedPass {
  readonly action: SchedulerAction;
  readonly target: string;
  readonly approvers: readonly string[];
}

/** What one scheduler pass did. */
export interface ReconcileResult {
  readonly action: SchedulerAction;
  readonly operationId: string;
  readonly state: RolloutResult['state'];
  readonly hosts: number;
}

export interface Deployer {
  readonly operations: Operations;
  /**
   * Places the spec's services on eligible online hosts (stable), stores the desired state and
   * sends every affected host its whole set. Throws CORRAL_ERR_PLACEMENT, naming every service
   * no host can take, before anything is stored; CORRAL_ERR_VALIDATION for repeated names.
   */
  deploy(
    spec: DeploymentSpec,
    o: { dryRun: boolean; actor: string; allowPending?: boolean; rollout?: RolloutOptions | undefined },
  ): Promise<DeployResponse>;
  /**
   * Continues a halted deploy (halted-rollouts.ts), in turn with deploys: sends the hosts it
   * left untouched their stored sets, as the same operation (no canary this time).
   */
  resume(operationId: string, halted: HaltedRollout, actor: string): Promise<void>;
  /**
   * One scheduler pass, in turn with deploys: re-places the stored spec on the hosts as they
   * are now (pending instances, lost hosts, every-host services on new hosts) and sends the
   * online hosts whose set changed or who missed one (see scheduler-actions.ts). Null when
   * there was nothing to do.
   */
  reconcile(o?: { readonly approved?: ApprovedPass }): Promise<ReconcileResult | null>;
  /**
   * What the scheduler would move if host `name` had `change` applied (labels, eligibility):
   * the instances placed or moved, and those stopped with nowhere to go. Reads only.
   */
  preview(name: string, change: HostChange): Promise<PlacementChange>;
  /** Instances no host could take at the last placement. */
  pendingCount(): number;
  /** Instances escalated after every retry, at the last pass. */
  escalatedCount(): number;
  /**
   * Restarts a service's placed instances (service-restart.ts), in turn with deploys; throws
   * CORRAL_ERR_NOT_FOUND when none matches.
   */
  restart(req: ServiceRestartRequest, actor: string): Promise<ServiceRestartResponse>;
  /** Removes matching services from the desired state and sends the affected hosts their sets. */
  teardown(filter: ServiceTeardownRequest, actor: string): Promise<ServiceTeardownResponse>;
  /**
   * Repair after a controller died (this one before its start, or another sharing the
   * database): operations left running by a controller not in `live` (default: this one
   * only) become failed, and so does the dispatch the agents never confirmed: of the hosts
   * those operations left unfinished, or with `everyUnconfirmed` every such dispatch (at a
   * start with no other controller alive). Returns the failed operations' ids. Idempotent.
   */
  recover(o?: {
    readonly live?: ReadonlySet<string>;
    readonly everyUnconfirmed?: boolean;
  }): Promise<string[]>;
  /**
   * Refuses new deploys and teardowns (CORRAL_ERR_UNAVAILABLE) and waits for the one in flight
   * and those already queued (which, once `signal` aborted, are refused as they start). Idempotent.
   */
  close(): Promise<void>;
}

export function createDeployer(o: DeployerOptions): Deployer {
  const { db, clock, log } = o;
  const operations = createOperations({
    db,
    clock,
    log,
    ...(o.events && { events: o.events }),
    ...(o.controllerId !== undefined && { controllerId: o.controllerId }),
  });
  const rescheduleAfterMs =
    o.rescheduleAfterMs === undefined ? DEFAULT_RESCHEDULE_AFTER_MS : o.rescheduleAfterMs;
  let pending = 0;
  let escalatedCount = 0;
  const retryPolicy: RetryPolicy = o.retry ?? {
    cooldownMs: DEFAULT_RETRY_COOLDOWN_MS,
    maxRetries: DEFAULT_MAX_RETRIES,
  };
  /** Per host: heals that failed in a row, and when the next may be tried (ms). */
  const healBackoff = new Map<string, { failures: number; nextMs: number }>();
  const deps = {
    client: o.client,
    pins: o.pins,
    concurrency: o.concurrency ?? DEFAULT_DISPATCH_CONCURRENCY,
    timeoutMs: o.applyTimeoutMs ?? DEFAULT_APPLY_TIMEOUT_MS,
    signal: o.signal,
    ...(o.healthStartMs !== undefined && { healthStartMs: o.healthStartMs }),
  };
  const defaultMinHealthyMs = o.minHealthyMs ?? DEFAULT_MIN_HEALTHY_MS;
  /** One deploy or teardown at a time: each reads the state the previous one left. */
  const turns = new SingleFlight({ name: 'deploys', maxQueued: MAX_WAITING });
  let closed = false;
  /** Scheduler actions that may have the controller's requests pending (at start: all, a past run's). */
  const raised = new Set<SchedulerAction>(SCHEDULER_ACTIONS);
  const digest = (text: string): string => createHash('sha256').update(text).digest('hex').slice(0, 16);

  /**
   * Cancels as resolved the controller's pending requests no longer needed: every one but
   * `gated`'s (the action that waits now, for its target).
   */
  async function settleApprovals(gated: { action: SchedulerAction; target: string } | null): Promise<void> {
    const a = o.approvals;
    if (!a) return;
    for (const action of SCHEDULER_ACTIONS) {
      const keep = gated?.action === action ? gated.target : null;
      if (keep === null && !raised.has(action)) continue;
      await a.resolve(action, keep);
      if (keep === null) raised.delete(action);
    }
  }

  const shuttingDown = () => new CorralError(ErrorCode.UNAVAILABLE, 'controller is shutting down');

  function exclusive<T>(fn: () => Promise<T>): Promise<T> {
    if (closed || o.signal.aborted) return Promise.reject(shuttingDown());
    return turns.run(() => (o.signal.aborted ? Promise.reject(shuttingDown()) : fn()));
  }

  const hostName = (snap: FleetSnapshot, id: string): string => snap.hosts.get(id)?.name ?? id;

  /** A rollout that broke (the database failed under it) still ends its operation, if it can. */
  async function guardedRollout(
    op: OperationRecorder,
    sets: readonly HostSet[],
    summary: Omit<OperationSummary, 'failedHosts'>,
    kind: 'deploy' | 'teardown' | SchedulerAction,
    staged?: StagedRollout,
  ): Promise<RolloutResult> {
    try {
      return await rollout(deps, op, sets, summary, kind, staged);
    } catch (e: unknown) {
      log.error({ err: e, operationId: op.id }, 'rollout broke off');
      await op
        .finish(
          'failed',
          { ...summary, failedHosts: sets.length },
          { level: 'error', message: `${kind} broke off: ${e instanceof Error ? e.message : String(e)}` },
        )
        .catch((err: unknown) => log.error({ err, operationId: op.id }, 'operation could not be closed'));
      throw e;
    }
  }

  async function deploy(
    spec: DeploymentSpec,
    opts: { dryRun: boolean; actor: string; allowPending?: boolean; rollout?: RolloutOptions | undefined },
  ): Promise<DeployResponse> {
    const dups = duplicateServiceNames(spec);
    if (dups.length > 0) {
      throw new CorralError(ErrorCode.VALIDATION, `spec/services: service names repeat: ${dups.join(', ')}`);
    }
    for (const [i, svc] of spec.services.entries()) {
      const longest = svc.count === undefined ? svc.name : `${svc.name}#${svc.count}`;
      if (longest.length > MAX_SERVICE_NAME_CHARS) {
        throw new CorralError(
          ErrorCode.VALIDATION,
          `spec/services/${i}: instance name ${longest} is longer than ${MAX_SERVICE_NAME_CHARS} characters`,
        );
      }
    }
    const variables = hostVariableProblem(spec);
    if (variables) throw new CorralError(ErrorCode.VALIDATION, `spec${variables}`);
    return exclusive(async () => {
      // The spec in force now: what `--auto-revert` puts back.
      const previous = opts.rollout?.autoRevert === true && !opts.dryRun ? await loadIntent(db) : [];
      const res = await deployNow(spec.services, opts, previous.length > 0);
      if (res.dryRun || res.ok || opts.rollout?.autoRevert !== true || previous.length === 0) return res;
      log.warn({ operationId: res.operationId }, 'deploy failed; putting the previous spec back');
      const gate = opts.rollout.minHealthyMs;
      try {
        const back = await deployNow(
          previous,
          {
            dryRun: false,
            actor: opts.actor,
            allowPending: true,
            rollout: {
              ...(opts.rollout.maxParallel !== undefined && { maxParallel: opts.rollout.maxParallel }),
              haltOnFailure: false,
              ...(gate !== undefined && { minHealthyMs: gate }),
            },
          },
          false,
          res.operationId,
        );
        return {
          ...res,
          revert: {
            operationId: back.operationId,
            state: back.state ?? 'failed',
            reason: back.reason ?? null,
            hosts: back.hosts,
          },
        };
      } catch (e: unknown) {
        // The failed deploy stands and says so; the revert could not even start.
        const why = e instanceof Error ? e.message : String(e);
        log.error({ err: e, operationId: res.operationId }, 'auto-revert could not start');
        return {
          ...res,
          revert: { operationId: null, state: 'failed', reason: why.slice(0, 2000), hosts: [] },
        };
      }
    });
  }

  /**
   * Plans `services` as the whole spec, stores it and rolls it out (inside the deploy turn).
   * `canRevert`: a previous spec exists for `--auto-revert`; `revertOf`: this puts one back
   * after that operation failed.
   */
  async function deployNow(
    services: DeploymentSpec['services'],
    opts: { dryRun: boolean; actor: string; allowPending?: boolean; rollout?: RolloutOptions | undefined },
    canRevert: boolean,
    revertOf: string | null = null,
  ): Promise<DeployResponse> {
    const snap = await loadSnapshot(db, o.live(), rescheduleAfterMs);
    const planned = await withHandover(
      snap,
      planDeploy(snap, services, { mode: 'operator', refusePending: !(opts.allowPending ?? false) }),
    );
    const { plan, next, removed } = planned;
    const waiting = planned.pending;
    const sets = hostSets(snap, next, true);
    if (opts.dryRun)
      return { operationId: null, dryRun: true, plan, removed, hosts: [], pending: waiting, ok: true };

    const summary = { services: next.length, removed: removed.length, hosts: sets.length };
    const asked = rolloutPolicy('deploy', sets.length, opts.rollout, defaultMinHealthyMs);
    const policy = { ...asked, autoRevert: asked.autoRevert && canRevert };
    const op = await db.transaction().execute(async (trx) => {
      const nowIso = isoAt(clock.now());
      await storeDesired(trx, snap, next, sets, nowIso);
      await storeIntent(trx, services, nowIso);
      pending = await storePending(trx, waiting, nowIso);
      const moved = plan.filter((p) => p.change === 'moved');
      const recorder = await operations.begin(
        trx,
        {
          kind: 'deploy',
          actor: opts.actor,
          target: `${next.length} services`,
          summary: { ...summary, failedHosts: 0 },
          steps: sets.map((s) => ({
            hostId: s.host.id,
            hostName: s.host.name,
            generation: s.generation,
            services: s.services.length,
          })),
        },
        [
          {
            level: 'info',
            message:
              revertOf === null
                ? `deploy of ${next.length} services to ${sets.length} hosts started by ${opts.actor}`
                : `auto-revert of ${revertOf}: the previous spec (${next.length} services) goes back to ${sets.length} hosts`,
          },
          ...(opts.rollout !== undefined && Object.keys(opts.rollout).length > 0
            ? [{ level: 'info' as const, message: describePolicy(policy) }]
            : []),
          ...(asked.autoRevert && !canRevert
            ? [{ level: 'warn' as const, message: 'auto-revert: there is no previous spec to put back' }]
            : []),
          ...moved.map((p) => ({
            level: 'info' as const,
            message: `${p.service} moves from ${p.previousHost ?? '?'} to ${p.host}`,
          })),
          ...removed.map((r) => ({
            level: 'info' as const,
            host: r.host,
            message: `${r.service} is no longer in the spec and is removed`,
          })),
          ...waiting.map((p) => ({
            level: 'warn' as const,
            message: `${p.service} is pending: ${p.reason}`,
          })),
        ],
      );
      await o.audit.append(
        {
          actor: opts.actor,
          action: 'deploy',
          target: recorder.id,
          details: {
            ...(revertOf !== null && { revertOf }),
            services: next.map((e) => e.service),
            hosts: sets.map((s) => s.host.name),
            removed: removed.map((r) => r.service),
            pending: waiting.map((p) => p.service),
          },
        },
        trx,
      );
      return recorder;
    });
    log.info({ operationId: op.id, services: next.length, hosts: sets.length }, 'deploy started');
    const result = await guardedRollout(op, sets, summary, 'deploy', {
      policy,
      order: sets.map((s) => s.host.id),
    });
    log.info({ operationId: op.id, state: result.state, failedHosts: result.failed }, 'deploy finished');
    return {
      operationId: op.id,
      dryRun: false,
      plan,
      removed,
      hosts: result.hosts,
      pending: waiting,
      ok: result.state === 'succeeded',
      state: result.state,
      reason: result.reason,
    };
  }

  async function teardown(filter: ServiceTeardownRequest, actor: string): Promise<ServiceTeardownResponse> {
    return exclusive(async () => {
      const snap = await loadSnapshot(db, o.live());
      let hostIds: Set<string> | undefined;
      if (filter.host !== undefined) {
        hostIds = new Set([...snap.hosts.values()].filter((h) => h.name === filter.host).map((h) => h.id));
        if (hostIds.size === 0) throw new CorralError(ErrorCode.NOT_FOUND, `no host named ${filter.host}`);
      }
      const matches = (d: DesiredEntry): boolean =>
        (hostIds === undefined || hostIds.has(d.hostId)) &&
        (filter.service === undefined ||
          d.service === filter.service ||
          serviceOfInstance(d.service) === filter.service);
      const intent = await loadIntent(db);
      // The spec forgets every service the teardown touches, so the scheduler does not put
      // it back; one torn down from one host keeps its other instances as they are.
      const forgotten = intent
        .map((s) => s.name)
        .filter((name) =>
          filter.service !== undefined
            ? name === filter.service ||
              snap.desired.some((d) => matches(d) && serviceOfInstance(d.service) === name)
            : hostIds === undefined ||
              snap.desired.some((d) => matches(d) && serviceOfInstance(d.service) === name),
        );
      const gone = snap.desired.filter(matches);
      const target = [
        filter.service !== undefined ? `service ${filter.service}` : '',
        filter.host !== undefined ? `host ${filter.host}` : '',
      ]
        .filter(Boolean)
        .join(' on ');
      if (gone.length === 0 && forgotten.length === 0 && target !== '') {
        throw new CorralError(ErrorCode.NOT_FOUND, `no deployed service matches ${target}`);
      }
      const next = snap.desired.filter((d) => !matches(d));
      const removed = gone.map((d) => ({ service: d.service, host: hostName(snap, d.hostId) }));
      // Hosts still owed an earlier change get it again, even when nothing new is removed.
      const sets = hostSets(snap, next, false);
      if (gone.length === 0 && sets.length === 0) {
        if (forgotten.length > 0) await dropFromSpec(forgotten);
        return { operationId: null, removed, hosts: [], ok: true };
      }
      const summary = { services: gone.length, removed: gone.length, hosts: sets.length };
      const op = await db.transaction().execute(async (trx) => {
        await storeDesired(trx, snap, next, sets, isoAt(clock.now()));
        await forgetIntent(trx, forgotten);
        if (forgotten.length > 0) {
          await trx.deleteFrom('pending_instances').where('service', 'in', forgotten).execute();
        }
        const recorder = await operations.begin(
          trx,
          {
            kind: 'teardown',
            actor,
            target: target || 'all',
            summary: { ...summary, failedHosts: 0 },
            steps: sets.map((s) => ({
              hostId: s.host.id,
              hostName: s.host.name,
              generation: s.generation,
              services: s.services.length,
            })),
          },
          [
            {
              level: 'info',
              message: `teardown of ${gone.length} services (${target || 'all'}) on ${sets.length} hosts started by ${actor}`,
            },
          ],
        );
        await o.audit.append(
          {
            actor,
            action: 'teardown',
            target: target || 'all',
            details: { operationId: recorder.id, removed: removed.map((r) => `${r.service}@${r.host}`) },
          },
          trx,
        );
        return recorder;
      });
      pending = await countPending(db);
      log.info({ operationId: op.id, services: gone.length, hosts: sets.length }, 'teardown started');
      const result = await guardedRollout(op, sets, summary, 'teardown');
      log.info({ operationId: op.id, state: result.state, failedHosts: result.failed }, 'teardown finished');
      return { operationId: op.id, removed, hosts: result.hosts, ok: result.failed === 0 };
    });
  }

  async function dropFromSpec(names: readonly string[]): Promise<void> {
    await db.transaction().execute(async (trx) => {
      await forgetIntent(trx, names);
      await trx.deleteFrom('pending_instances').where('service', 'in', names).execute();
    });
    pending = await countPending(db);
  }

  /** The plan with make-before-break applied (see handover.ts); reads what runs only for moves. */
  async function withHandover(
    snap: FleetSnapshot,
    planned: ReturnType<typeof planDeploy>,
  ): Promise<HandedOver> {
    if (handoverCandidates(snap, planned).length === 0) return { ...planned, waiting: [], released: [] };
    const running = await loadRunning(db);
    return handOver(
      snap,
      planned,
      (hostId, instance) => running.has(runningKey(hostId, instance)),
      clock.now(),
    );
  }

  /** A draining host with nothing left on it, before or after this pass, is drained: ineligible. */
  async function finishDrains(snap: FleetSnapshot, planned: HandedOver): Promise<void> {
    const busy = new Set([...snap.desired, ...planned.next].map((e) => e.hostId));
    const done = [...snap.hosts.values()].filter(
      (h) => h.drainDeadlineMs !== null && !h.decommissioned && !busy.has(h.id),
    );
    if (done.length === 0) return;
    await db.transaction().execute(async (trx) => {
      await trx
        .updateTable('hosts')
        .set({ drain_deadline: null, eligible: 0 })
        .where(
          'id',
          'in',
          done.map((h) => h.id),
        )
        .execute();
      for (const h of done) {
        await o.audit.append(
          { actor: SCHEDULER_ACTOR, action: 'drain-complete', target: h.name, details: { host: h.id } },
          trx,
        );
      }
    });
    for (const h of done) log.info({ hostId: h.id, host: h.name }, 'host drained');
  }

  /**
   * `sets` plus, for every host with a retry due, its set again under a new generation (so
   * its agent starts what gave up): the same services, the generation one past the stored.
   */
  function withRetries(
    snap: FleetSnapshot,
    next: readonly DesiredEntry[],
    sets: readonly HostSet[],
    due: ReadonlyMap<string, unknown>,
  ): HostSet[] {
    const out = sets.map((s) =>
      due.has(s.host.id) && !s.changed
        ? { ...s, generation: (snap.hostDesired.get(s.host.id)?.generation ?? 0) + 1, changed: true }
        : s,
    );
    for (const hostId of due.keys()) {
      const host = snap.hosts.get(hostId);
      const current = snap.hostDesired.get(hostId);
      if (!host || !current || out.some((s) => s.host.id === hostId)) continue;
      const services = next
        .filter((e) => e.hostId === hostId)
        .sort((a, b) => (a.service < b.service ? -1 : 1))
        .map((e) => e.spec);
      out.push({
        host,
        generation: current.generation + 1,
        setHash: current.setHash,
        services,
        dropped: [],
        changed: true,
      });
    }
    return out;
  }

  /** Escalations go to the audit log and the deploy log; the count is kept for /metrics. */
  async function noteEscalations(
    snap: FleetSnapshot,
    escalated: readonly { hostId: string; service: string; reason: string }[],
  ): Promise<void> {
    for (const e of escalated) {
      log.error({ hostId: e.hostId, service: e.service, reason: e.reason }, 'service escalated');
      await o.audit.append({
        actor: SCHEDULER_ACTOR,
        action: 'escalate',
        target: `${e.service}@${hostName(snap, e.hostId)}`,
        details: { reason: e.reason },
      });
    }
    const row = await db
      .selectFrom('service_retries')
      .select((eb) => eb.fn.countAll<number>().as('n'))
      .where('escalated_at', 'is not', null)
      .executeTakeFirst();
    escalatedCount = Number(row?.n ?? 0);
  }

  /** The line an operation's log gets for each change of placement the scheduler makes. */
  function placementLines(snap: FleetSnapshot, planned: HandedOver) {
    const lost = [...snap.hosts.values()].filter((h) => h.lost && !h.decommissioned).map((h) => h.name);
    return [
      ...lost
        .filter((name) => planned.plan.some((p) => p.change === 'moved' && p.previousHost === name))
        .map((name) => ({
          level: 'warn' as const,
          host: name,
          message: `${name} has been offline longer than the reschedule delay; its services move`,
        })),
      ...planned.plan
        .filter((p) => p.change !== 'kept')
        .map((p) => ({
          level: 'info' as const,
          message:
            p.change === 'moved'
              ? `${p.service} moves from ${p.previousHost ?? '?'} to ${p.host}`
              : `${p.service} placed on ${p.host}`,
        })),
      ...planned.waiting.map((w) => ({
        level: 'info' as const,
        host: w.from,
        message: `${w.service} keeps running on ${w.from} until it runs on ${w.to.join(', ')}`,
      })),
      ...planned.released.map((r) => ({
        level: r.why === 'replaced' ? ('info' as const) : ('warn' as const),
        host: r.host,
        message:
          r.why === 'replaced'
            ? `${r.service} stopped on ${r.host}: its replacement runs`
            : `${r.service} stopped on ${r.host}: the drain deadline passed before its replacement ran`,
      })),
      ...planned.removed
        .filter((r) => !planned.released.some((x) => x.service === r.service && x.host === r.host))
        .map((r) => ({
          level: 'info' as const,
          host: r.host,
          message: `${r.service} no longer belongs on ${r.host} and is stopped there`,
        })),
    ];
  }

  async function reconcile(ro: { readonly approved?: ApprovedPass } = {}): Promise<ReconcileResult | null> {
    return exclusive(async () => {
      const live = o.live();
      const intent = await loadIntent(db);
      // Nothing deployed through a spec and no host owed a set: the fleet is not read at all.
      if (intent.length === 0) {
        const behind = await db
          .selectFrom('host_desired')
          .select('host_id')
          .whereRef('acked_generation', '<', 'generation')
          .limit(1)
          .executeTakeFirst();
        if (!behind) {
          await settleApprovals(null);
          return null;
        }
      }
      const snap = await loadSnapshot(db, live, rescheduleAfterMs);
      const planned = await withHandover(
        snap,
        planDeploy(snap, intent, { mode: 'scheduler', refusePending: false }),
      );
      await finishDrains(snap, planned);
      const retries = await decideRetries(db, snap, planned.next, retryPolicy, live.nowMs);
      await noteEscalations(snap, retries.escalated);
      const placedSets = hostSets(snap, planned.next, false);
      const all = withRetries(snap, planned.next, placedSets, retries.due);
      const held = await heldHosts(db);
      const sendable = all.filter(
        (s) =>
          s.host.status === 'online' &&
          !held.has(s.host.id) &&
          ((healBackoff.get(s.host.id)?.nextMs ?? 0) <= live.nowMs || retries.due.has(s.host.id)),
      );
      const placedSendable = sendable.filter(
        (s) => !retries.due.has(s.host.id) && placedSets.some((p) => p.host.id === s.host.id),
      );
      const action = decide(placedSets, placedSendable) ?? (retries.due.size > 0 ? 'retry' : null);
      const pendingBefore = pending;
      const nowIso = isoAt(clock.now());
      if (action === null) {
        if (planned.pending.length !== pendingBefore || pendingBefore > 0) {
          pending = await db.transaction().execute((trx) => storePending(trx, planned.pending, nowIso));
        }
        await settleApprovals(null);
        return null;
      }
      const target = schedulerTarget(
        (action === 'reschedule' ? all.filter((s) => s.changed) : sendable).map((s) => s.host.name),
        digest,
      );
      const approved = ro.approved;
      if (approved && (approvalOf(approved.action) !== approvalOf(action) || approved.target !== target)) {
        throw new CorralError(
          ErrorCode.CONFLICT,
          `the fleet changed since ${approved.action} of ${approved.target} was asked for: now ${action} of ${target}`,
        );
      }
      if (!approved && o.approvals?.required(action)) {
        // Nothing changes until operators approve; the request is raised once per target.
        await settleApprovals({ action, target });
        await o.approvals.raise(action, target);
        raised.add(action);
        return null;
      }
      await settleApprovals(null);
      const summary = {
        services: planned.next.length,
        removed: planned.removed.length,
        hosts: sendable.length,
      };
      const op = await db.transaction().execute(async (trx) => {
        await storeDesired(trx, snap, planned.next, all, nowIso);
        pending = await storePending(trx, planned.pending, nowIso);
        const retryLines = [...retries.due].flatMap(([hostId, list]) =>
          list.map((r) => ({
            level: 'warn' as const,
            host: hostName(snap, hostId),
            message: `${r.service} failed on ${hostName(snap, hostId)}; trying again (${r.attempt} of ${retryPolicy.maxRetries})`,
          })),
        );
        const lines =
          action === 'retry'
            ? retryLines
            : action === 'reschedule'
              ? [...placementLines(snap, planned), ...retryLines]
              : [
                  ...retryLines,
                  ...sendable
                    .filter((s) => !retries.due.has(s.host.id))
                    .map((s) => ({
                      level: 'info' as const,
                      host: s.host.name,
                      message: `${s.host.name} has not accepted generation ${s.generation}; sending it again`,
                    })),
                ];
        const recorder = await operations.begin(
          trx,
          {
            kind: action,
            actor: SCHEDULER_ACTOR,
            target: action === 'reschedule' ? `${planned.next.length} services` : `${sendable.length} hosts`,
            summary: { ...summary, failedHosts: 0 },
            steps: sendable.map((s) => ({
              hostId: s.host.id,
              hostName: s.host.name,
              generation: s.generation,
              services: s.services.length,
            })),
          },
          [
            { level: 'info', message: `${action} started by the controller (${sendable.length} hosts)` },
            ...(approved
              ? [{ level: 'info' as const, message: `approved by ${approved.approvers.join(', ')}` }]
              : []),
            ...lines,
            ...planned.pending
              .filter((p) => action === 'reschedule' || p.service === '')
              .map((p) => ({ level: 'warn' as const, message: `${p.service} is pending: ${p.reason}` })),
          ],
        );
        await o.audit.append(
          {
            actor: SCHEDULER_ACTOR,
            action,
            target: recorder.id,
            details: {
              moved: planned.plan.filter((p) => p.change === 'moved').map((p) => `${p.service}@${p.host}`),
              placed: planned.plan.filter((p) => p.change === 'placed').map((p) => `${p.service}@${p.host}`),
              stopped: planned.removed.map((r) => `${r.service}@${r.host}`),
              hosts: sendable.map((s) => s.host.name),
            },
          },
          trx,
        );
        return recorder;
      });
      log.info({ operationId: op.id, action, hosts: sendable.length }, 'scheduler operation started');
      const result = await guardedRollout(op, sendable, summary, action);
      for (const [i, set] of sendable.entries()) {
        if (result.hosts[i]?.outcome === 'failed') {
          const failures = (healBackoff.get(set.host.id)?.failures ?? 0) + 1;
          const delay = Math.min(HEAL_BACKOFF_MAX_MS, live.intervalMs * 2 ** Math.min(failures - 1, 16));
          healBackoff.set(set.host.id, { failures, nextMs: clock.now() + delay });
        } else {
          healBackoff.delete(set.host.id);
        }
      }
      log.info({ operationId: op.id, action, state: result.state }, 'scheduler operation finished');
      return { action, operationId: op.id, state: result.state, hosts: sendable.length };
    });
  }

  async function resume(id: string, halted: HaltedRollout, actor: string): Promise<void> {
    await exclusive(async () => {
      const snap = await loadSnapshot(db, o.live(), rescheduleAfterMs);
      const steps = await operations.stepStates(id);
      const left = new Set(steps.filter((s) => s.state === 'pending').map((s) => s.hostId));
      const rank = new Map(halted.hosts.map((h, i) => [h, i]));
      const sets = hostSets(snap, snap.desired, false)
        .filter((s) => left.has(s.host.id))
        .sort((a, b) => (rank.get(a.host.id) ?? 0) - (rank.get(b.host.id) ?? 0));
      const detail = await operations.detail(id, Number.MAX_SAFE_INTEGER);
      const before = detail?.operation.summary ?? {
        services: 0,
        removed: 0,
        hosts: steps.length,
        failedHosts: 0,
      };
      const op = await operations.reopen(id, {
        level: 'info',
        message: `resumed by ${actor}: ${sets.length} hosts left`,
      });
      await db.transaction().execute((trx) => forgetHalted(trx, id));
      const result = await guardedRollout(
        op,
        sets,
        { services: before.services, removed: before.removed, hosts: sets.length },
        'deploy',
        {
          policy: resumedPolicy(halted.policy),
          earlier: {
            hosts: steps.length - sets.length,
            failed: steps.filter((s) => s.state === 'failed').length,
          },
          order: halted.hosts,
        },
      );
      log.info({ operationId: id, state: result.state }, 'resumed deploy finished');
    });
  }

  return {
    operations,
    deploy,
    resume,
    teardown,
    restart: (req, actor) =>
      exclusive(() =>
        restartService(
          {
            db,
            client: o.client,
            pins: o.pins,
            operations,
            audit: o.audit,
            log,
            signal: o.signal,
            live: () => o.live(),
          },
          req,
          actor,
        ),
      ),
    reconcile,
    async preview(name, change) {
      const snap = await loadSnapshot(db, o.live(), rescheduleAfterMs);
      const hosts = new Map(
        [...snap.hosts].map(([id, h]) => [
          id,
          h.name === name && !h.decommissioned ? { ...h, ...change } : h,
        ]),
      );
      const planned = planDeploy({ ...snap, hosts }, await loadIntent(db), {
        mode: 'scheduler',
        refusePending: false,
      });
      return { plan: planned.plan.filter((p) => p.change !== 'kept'), removed: planned.removed };
    },
    pendingCount: () => pending,
    escalatedCount: () => escalatedCount,
    async recover(r = {}) {
      const live = r.live ?? new Set(o.controllerId === undefined ? [] : [o.controllerId]);
      const failed = await operations.failInterrupted(RESTART_REASON, live);
      const hostIds = [...new Set(failed.flatMap((f) => f.hostIds))];
      if (r.everyUnconfirmed === true || hostIds.length > 0) {
        let unconfirmed = db
          .updateTable('service_dispatch')
          .set({
            state: 'failed',
            reason: 'the controller restarted before the agent confirmed this change',
            updated_at: isoAt(clock.now()),
          })
          .where('state', '=', 'pending');
        if (r.everyUnconfirmed !== true) unconfirmed = unconfirmed.where('host_id', 'in', hostIds);
        await unconfirmed.execute();
      }
      if (r.everyUnconfirmed === true || failed.length > 0) pending = await countPending(db);
      return failed.map((f) => f.id);
    },
    async close() {
      closed = true;
      await turns.idle();
    },
  };
}

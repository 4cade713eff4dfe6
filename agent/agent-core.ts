import { randomUUID } from 'node:crypto';
import type { Logger } from 'pino';
import type {
  AgentHealth,
  AgentStatus,
  ApplyAccepted,
  ApplyRequest,
  RestartRequest,
  RestartResponse,
  TeardownRequest,
  TeardownResponse,
} from '../protocol/agent-api.js';
import { CorralError, ErrorCode } from '../protocol/errors.js';
import type { HostMetrics, ServiceStatus } from '../protocol/heartbeat.js';
import type { ServiceSpec } from '../protocol/service-spec.js';
import { saveDesiredState, type DesiredState } from './reconcile/desired-store.js';
import { resolveSpec, type HostFacts } from './reconcile/host-vars.js';
import type { DesiredService } from './reconcile/plan.js';
import type { Reconciler } from './reconcile/reconciler.js';
import type { ServiceTable } from './supervise/service-table.js';
import type { StateFiles } from './state/state-manifest.js';
import { desiredSetHash, specHash } from './reconcile/spec-hash.js';
import { SingleFlight } from '../kit/single-flight.js';

/** Applies and teardowns that may wait behind the running one (the controller sends one at a time). */
const DESIRED_CHANGES_MAX_QUEUED = 64;

export interface AgentCoreDeps {
  readonly version: string;
  readonly hostId: string;
  readonly statePath: string;
  /** Told of `statePath` once it is on disk (see state-manifest.ts). */
  readonly stateFiles?: StateFiles;
  readonly initial: DesiredState;
  readonly facts: HostFacts;
  readonly table: ServiceTable;
  readonly reconciler: Reconciler;
  readonly log: Logger;
  readonly now: () => number;
  readonly startedAt: number;
  metrics(): Promise<HostMetrics>;
  /**
   * Refuses a resolved spec this host's runtime will not run (CORRAL_ERR_VALIDATION naming the
   * field under `where`): no runtime of that kind, a volume outside the allowed dirs, a limit
   * it cannot enforce. Absent: every spec the schema admits is accepted.
   */
  checkSpec?(spec: ServiceSpec, where: string): void;
}

/**
 * What the agent's API does, apart from transport: generation rules for apply, teardown of
 * the desired set, and the status view. Changes to the desired set are serialized and
 * persisted before they are acknowledged.
 */
export interface AgentCore {
  health(): AgentHealth;
  status(): Promise<AgentStatus>;
  apply(req: ApplyRequest): Promise<ApplyAccepted>;
  teardown(req: TeardownRequest): Promise<TeardownResponse>;
  /** Restarts one supervised service on its spec; CORRAL_ERR_NOT_FOUND for an unknown one. */
  restart(req: RestartRequest): Promise<RestartResponse>;
  /** The generation the last finished reconcile brought about (what heartbeats report). */
  appliedGeneration(): number;
  markApplied(generation: number): void;
  /** After this, every change is refused: the worker is being decommissioned. */
  freeze(): void;
  /** Starts the reconcile that follows an agent start (re-adopted services vs desired). */
  startup(): void;
}

export function createAgentCore(deps: AgentCoreDeps): AgentCore {
  let desired = deps.initial;
  let applied = 0;
  let frozen = false;
  /** Resolved specs of `desired.services`, and the names that did not resolve on this host. */
  let resolved: DesiredService[] = [];
  const unresolved = new Map<string, string>();

  const turns = new SingleFlight({ name: 'desired-set changes', maxQueued: DESIRED_CHANGES_MAX_QUEUED });
  const serialized = <T>(fn: () => Promise<T>): Promise<T> => turns.run(fn);

  function resolveAll(services: readonly ServiceSpec[]): DesiredService[] {
    const seen = new Set<string>();
    return services.map((spec, i) => {
      if (seen.has(spec.name)) {
        throw new CorralError(ErrorCode.VALIDATION, `body/services/${i}/name repeats ${spec.name}`);
      }
      seen.add(spec.name);
      const r = resolveSpec(spec, deps.facts, `body/services/${i}`);
      deps.checkSpec?.(r, `body/services/${i}`);
      return { spec: r, specHash: specHash(r) };
    });
  }

  function assertNotFrozen(): void {
    if (frozen) throw new CorralError(ErrorCode.CONFLICT, 'this worker is self-destructing');
  }

  const health = (): AgentHealth => ({
    version: deps.version,
    hostId: deps.hostId,
    uptimeSeconds: (deps.now() - deps.startedAt) / 1000,
  });

  return {
    health,

    async status() {
      const services: ServiceStatus[] = deps.table.statuses();
      const present = new Set(services.map((s) => s.name));
      for (const d of resolved) {
        if (!present.has(d.spec.name)) {
          services.push({
            name: d.spec.name,
            state: 'pending',
            restarts: 0,
            lastError: null,
            pid: null,
            since: null,
          });
        }
      }
      for (const [name, error] of unresolved) {
        if (!present.has(name)) {
          services.push({ name, state: 'failed', restarts: 0, lastError: error, pid: null, since: null });
        }
      }
      return {
        ...health(),
        generation: desired.generation,
        applying: deps.reconciler.busy(),
        services: services.sort((a, b) => (a.name < b.name ? -1 : 1)),
        metrics: await deps.metrics(),
      };
    },

    apply(req) {
      return serialized(async () => {
        assertNotFrozen();
        const hash = desiredSetHash(req.services);
        if (req.generation < desired.generation) {
          throw new CorralError(
            ErrorCode.STALE_GENERATION,
            `generation ${req.generation} is older than the desired generation ${desired.generation}`,
          );
        }
        if (req.generation === desired.generation) {
          if (hash !== desired.applyHash) {
            throw new CorralError(
              ErrorCode.CONFLICT,
              `generation ${req.generation} was already applied with different services`,
            );
          }
          return { operationId: desired.operationId, generation: desired.generation, noop: true };
        }
        const next = resolveAll(req.services);
        const operationId = randomUUID();
        const state: DesiredState = {
          version: 1,
          generation: req.generation,
          applyHash: hash,
          operationId,
          services: req.services,
        };
        await saveDesiredState(deps.statePath, state, deps.stateFiles);
        desired = state;
        resolved = next;
        unresolved.clear();
        deps.log.info({ generation: req.generation, operationId, services: next.length }, 'apply accepted');
        deps.reconciler.request({ kind: 'apply', generation: req.generation, operationId, services: next });
        return { operationId, generation: req.generation, noop: false };
      });
    },

    teardown(req) {
      return serialized(async () => {
        assertNotFrozen();
        const known = new Set([...desired.services.map((s) => s.name), ...deps.table.names()]);
        if (req.service !== undefined && !known.has(req.service)) {
          throw new CorralError(ErrorCode.NOT_FOUND, `no service named ${req.service}`);
        }
        const gone = req.service !== undefined ? [req.service] : [...known].sort();
        const keep = (name: string): boolean => !gone.includes(name);
        const state: DesiredState = { ...desired, services: desired.services.filter((s) => keep(s.name)) };
        await saveDesiredState(deps.statePath, state, deps.stateFiles);
        desired = state;
        resolved = resolved.filter((d) => keep(d.spec.name));
        for (const name of gone) unresolved.delete(name);
        const operationId = randomUUID();
        deps.log.info({ operationId, services: gone }, 'teardown accepted');
        deps.reconciler.request({
          kind: 'teardown',
          generation: desired.generation,
          operationId,
          services: resolved,
          untouchable: [...unresolved.keys()],
        });
        return { operationId, stopped: gone };
      });
    },

    async restart(req) {
      assertNotFrozen();
      if (!deps.table.names().includes(req.service)) {
        throw new CorralError(ErrorCode.NOT_FOUND, `no service named ${req.service}`);
      }
      const operationId = randomUUID();
      deps.log.info({ operationId, service: req.service }, 'restart accepted');
      const { error, status } = await deps.table.restart(req.service, 'restarted by the controller');
      return {
        operationId,
        service: req.service,
        pid: status.pid,
        restarts: status.restarts,
        error: error ?? null,
      };
    },

    appliedGeneration: () => applied,
    markApplied(generation) {
      applied = Math.max(applied, generation);
    },
    freeze() {
      frozen = true;
    },

    startup() {
      resolved = [];
      desired.services.forEach((spec, i) => {
        try {
          const r = resolveSpec(spec, deps.facts, `services/${i}`);
          deps.checkSpec?.(r, `services/${i}`);
          resolved.push({ spec: r, specHash: specHash(r) });
        } catch (e: unknown) {
          const message = e instanceof Error ? e.message : String(e);
          deps.log.error(
            { service: spec.name, reason: message },
            'desired service does not resolve on this host',
          );
          unresolved.set(spec.name, message);
        }
      });
      deps.reconciler.request({
        kind: 'startup',
        generation: desired.generation,
        operationId: desired.operationId || randomUUID(),
        services: resolved,
        untouchable: [...unresolved.keys()],
      });
    },
  };
}

import { Type, type Static } from '@sinclair/typebox';
import { Labels, Name, Reason, Timestamp } from './common.js';
import { ContainerId, ServiceState } from './heartbeat.js';
import { OPERATION_STATES } from './operations.js';
import { RolloutOptions } from './rollout.js';
import {
  HealthCheck,
  HOST_VARIABLES,
  MAX_SERVICE_COUNT,
  RESTART_POLICIES,
  BaseServiceName,
  ServiceName,
  ContainerServiceSpec,
  ProcessServiceSpec,
  type ServiceSpec,
  ENV_NAME_RE,
} from './service-spec.js';

/**
 * A deployment spec, as operators write it (YAML or JSON): services with their runtime spec,
 * restart policy, health check and placement. Fields the agent's ServiceSpec requires get
 * defaults here (`runtime: process`, `args: []`, `env: {}`, `restart: on-failure`).
 */
export const MAX_DEPLOYMENT_SERVICES = 500;
/** Largest spec file or body, in bytes. */
export const MAX_DEPLOYMENT_SPEC_BYTES = 1024 * 1024;

/** `every-host` as a string is short for `{ everyHost: true }`. */
export const EVERY_HOST = 'every-host';
export const PlacementRule = Type.Object(
  {
    hosts: Type.Optional(Type.Array(Name, { minItems: 1, maxItems: 256 })),
    labels: Type.Optional(Labels),
    /** One instance on every eligible host (that satisfies `hosts`/`labels`), now and later. */
    everyHost: Type.Optional(Type.Boolean()),
  },
  { additionalProperties: false },
);
export type PlacementRule = Static<typeof PlacementRule>;
export const Placement = Type.Union([Type.Literal(EVERY_HOST), PlacementRule]);
export type Placement = Static<typeof Placement>;

/** The rule a placement stands for (`every-host` written out). */
export function placementRule(p: Placement | undefined): PlacementRule | undefined {
  return p === EVERY_HOST ? { everyHost: true } : p;
}

const spec = ProcessServiceSpec.properties;
const containerSpec = ContainerServiceSpec.properties;
const DeployedEnv = Type.Optional(
  Type.Record(Type.String({ pattern: ENV_NAME_RE.source }), Type.String({ maxLength: 4096 }), {
    maxProperties: 64,
  }),
);
const DeployedRestart = Type.Optional(Type.Union(RESTART_POLICIES.map((r) => Type.Literal(r))));
/** Instances, named `name#1` … `name#N`; without it, one instance named `name`. */
const Count = Type.Optional(Type.Integer({ minimum: 1, maximum: MAX_SERVICE_COUNT }));
/** At most one instance per host (default true); false lets instances share a host. */
const Spread = Type.Optional(Type.Boolean());

export const DeploymentProcessService = Type.Object(
  {
    name: BaseServiceName,
    runtime: Type.Optional(Type.Literal('process')),
    command: spec.command,
    args: Type.Optional(spec.args),
    env: DeployedEnv,
    workingDir: spec.workingDir,
    user: spec.user,
    group: spec.group,
    memory: spec.memory,
    cpus: spec.cpus,
    umask: spec.umask,
    restart: DeployedRestart,
    healthCheck: Type.Optional(HealthCheck),
    stopGraceMs: spec.stopGraceMs,
    placement: Type.Optional(Placement),
    count: Count,
    spread: Spread,
  },
  { additionalProperties: false },
);
export type DeploymentProcessService = Static<typeof DeploymentProcessService>;

export const DeploymentContainerService = Type.Object(
  {
    name: BaseServiceName,
    runtime: Type.Literal('container'),
    image: containerSpec.image,
    pull: containerSpec.pull,
    command: containerSpec.command,
    args: containerSpec.args,
    env: DeployedEnv,
    ports: containerSpec.ports,
    volumes: containerSpec.volumes,
    user: containerSpec.user,
    memory: containerSpec.memory,
    cpus: containerSpec.cpus,
    network: containerSpec.network,
    restart: DeployedRestart,
    healthCheck: Type.Optional(HealthCheck),
    stopGraceMs: containerSpec.stopGraceMs,
    placement: Type.Optional(Placement),
    count: Count,
    spread: Spread,
  },
  { additionalProperties: false },
);

export type DeploymentContainerService = Static<typeof DeploymentContainerService>;

/** A service as written in a deployment: `runtime` is `process` (the default) or `container`. */
export const DeploymentService = Type.Union([DeploymentProcessService, DeploymentContainerService]);
export type DeploymentService = Static<typeof DeploymentService>;

export const DeploymentSpec = Type.Object(
  { services: Type.Array(DeploymentService, { minItems: 1, maxItems: MAX_DEPLOYMENT_SERVICES }) },
  { additionalProperties: false },
);
export type DeploymentSpec = Static<typeof DeploymentSpec>;

/**
 * The agent's ServiceSpec for a deployment service (defaults filled; placement, count and
 * spread dropped), under the instance name (`name#k`) when given.
 */
export function toServiceSpec(service: DeploymentService, instance: string = service.name): ServiceSpec {
  const { placement: _placement, count: _count, spread: _spread, ...rest } = service;
  if (rest.runtime === 'container') {
    return { ...rest, name: instance, env: rest.env ?? {}, restart: rest.restart ?? 'on-failure' };
  }
  return {
    ...rest,
    name: instance,
    runtime: 'process',
    args: rest.args ?? [],
    env: rest.env ?? {},
    restart: rest.restart ?? 'on-failure',
  };
}

const VARIABLE_RE = /\$\$\{|\$\{([^}]*)\}|\$\{/g;

/**
 * The first misuse of host variables in a spec, as `/services/I/FIELD …`, or undefined. The
 * worker resolves `${host.*}`; this finds unknown names and unterminated `${` before anything
 * is sent, so a typo is one clear error instead of a failure on every host.
 */
export function hostVariableProblem(spec: DeploymentSpec): string | undefined {
  const check = (value: string, field: string): string | undefined => {
    for (const m of value.matchAll(VARIABLE_RE)) {
      if (m[0] === '$${') continue;
      const name = m[1];
      if (name === undefined) return `${field} has an unterminated \${`;
      if (!(HOST_VARIABLES as readonly string[]).includes(name.trim())) {
        return `${field} uses unknown variable \${${name}} (known: ${HOST_VARIABLES.join(', ')})`;
      }
    }
    return undefined;
  };
  for (const [i, svc] of spec.services.entries()) {
    const at = `/services/${i}`;
    const fields: [string, string][] = [];
    if (svc.command !== undefined) fields.push([`${at}/command`, svc.command]);
    (svc.args ?? []).forEach((a, j) => fields.push([`${at}/args/${j}`, a]));
    if (svc.runtime === 'container') {
      (svc.ports ?? []).forEach((p, j) => fields.push([`${at}/ports/${j}`, p]));
      (svc.volumes ?? []).forEach((v, j) => fields.push([`${at}/volumes/${j}`, v]));
    }
    for (const [k, v] of Object.entries(svc.env ?? {})) fields.push([`${at}/env/${k}`, v]);
    if (svc.runtime !== 'container' && svc.workingDir !== undefined)
      fields.push([`${at}/workingDir`, svc.workingDir]);
    const hc = svc.healthCheck;
    if (hc?.type === 'command') {
      fields.push([`${at}/healthCheck/command`, hc.command]);
      (hc.args ?? []).forEach((a, j) => fields.push([`${at}/healthCheck/args/${j}`, a]));
    } else if (hc?.type === 'tcp' && hc.host !== undefined) {
      fields.push([`${at}/healthCheck/host`, hc.host]);
    } else if (hc?.type === 'http') {
      fields.push([`${at}/healthCheck/url`, hc.url]);
    }
    for (const [field, value] of fields) {
      const problem = check(value, field);
      if (problem) return problem;
    }
  }
  return undefined;
}

/** Names that appear more than once in a spec (a spec with any is refused). */
export function duplicateServiceNames(spec: DeploymentSpec): string[] {
  const seen = new Set<string>();
  const dups = new Set<string>();
  for (const s of spec.services) (seen.has(s.name) ? dups : seen).add(s.name);
  return [...dups];
}

export const DeployRequest = Type.Object(
  {
    spec: DeploymentSpec,
    dryRun: Type.Optional(Type.Boolean()),
    /** Store the spec even when some instances have no host yet (they wait as `pending`). */
    allowPending: Type.Optional(Type.Boolean()),
    /** Batches, canaries, halting (protocol/rollout.ts); by default every host at once. */
    rollout: Type.Optional(RolloutOptions),
  },
  { additionalProperties: false },
);
export type DeployRequest = Static<typeof DeployRequest>;

export const HostDispatchResult = Type.Object(
  {
    host: Name,
    /** `untouched`: the rollout halted before this host was sent anything. */
    outcome: Type.Union([
      Type.Literal('applied'),
      Type.Literal('unchanged'),
      Type.Literal('failed'),
      Type.Literal('untouched'),
    ]),
    generation: Type.Integer({ minimum: 0 }),
    services: Type.Integer({ minimum: 0 }),
    reason: Type.Union([Reason, Type.Null()]),
  },
  { additionalProperties: false },
);
export type HostDispatchResult = Static<typeof HostDispatchResult>;

export const PlanEntry = Type.Object(
  {
    service: ServiceName,
    host: Name,
    change: Type.Union([Type.Literal('kept'), Type.Literal('placed'), Type.Literal('moved')]),
    previousHost: Type.Union([Name, Type.Null()]),
    /** Fields of the running copy's spec the new one changes (`env +KEY`: keys only, never values). */
    changed: Type.Optional(Type.Array(Type.String({ maxLength: 160 }), { maxItems: 64 })),
    /** Whether the agent restarts (or, moved, stops and starts elsewhere) the running copy. */
    restarts: Type.Optional(Type.Boolean()),
  },
  { additionalProperties: false },
);
export type PlanEntry = Static<typeof PlanEntry>;

/** Pending instances one answer lists at most. */
export const MAX_PENDING_LISTED = 100_000;
export const PendingInstance = Type.Object(
  { service: ServiceName, reason: Reason },
  { additionalProperties: false },
);
export type PendingInstance = Static<typeof PendingInstance>;

export const DeployResponse = Type.Object(
  {
    operationId: Type.Union([Type.String({ maxLength: 64 }), Type.Null()]),
    dryRun: Type.Boolean(),
    plan: Type.Array(PlanEntry, { maxItems: MAX_DEPLOYMENT_SERVICES }),
    /** Services removed from the desired state because the new spec no longer has them. */
    removed: Type.Array(Type.Object({ service: ServiceName, host: Name }, { additionalProperties: false }), {
      maxItems: MAX_DEPLOYMENT_SERVICES,
    }),
    hosts: Type.Array(HostDispatchResult, { maxItems: 10_000 }),
    /** Instances no host can take now: they wait, and are placed as soon as a host fits. */
    pending: Type.Array(PendingInstance, { maxItems: MAX_PENDING_LISTED }),
    ok: Type.Boolean(),
    /** The operation's final state (absent for a dry run). */
    state: Type.Optional(Type.Union(OPERATION_STATES.map((s) => Type.Literal(s)))),
    /** Why it did not succeed as a whole (e.g. where it halted). */
    reason: Type.Optional(Type.Union([Reason, Type.Null()])),
    /** `--auto-revert` after a failure: the second operation, which put the previous spec back. */
    revert: Type.Optional(
      Type.Object(
        {
          operationId: Type.Union([Type.String({ maxLength: 64 }), Type.Null()]),
          state: Type.Union(OPERATION_STATES.map((s) => Type.Literal(s))),
          reason: Type.Union([Reason, Type.Null()]),
          hosts: Type.Array(HostDispatchResult, { maxItems: 10_000 }),
        },
        { additionalProperties: false },
      ),
    ),
  },
  { additionalProperties: false },
);
export type DeployResponse = Static<typeof DeployResponse>;

/** One row of `corral controller services`. */
export const ServiceView = Type.Object(
  {
    service: ServiceName,
    host: Name,
    desired: Type.Union([Type.Literal('running'), Type.Literal('removed')]),
    observed: ServiceState,
    restarts: Type.Integer({ minimum: 0 }),
    lastError: Type.Union([Reason, Type.Null()]),
    updatedAt: Type.Union([Timestamp, Type.Null()]),
    /** From the desired spec: `process` or `container`, and a container's image. */
    runtime: Type.Optional(Type.String({ maxLength: 16 })),
    image: Type.Optional(Type.String({ maxLength: 512 })),
    /** The container the host last reported running the service (container services only). */
    containerId: Type.Optional(ContainerId),
    /** Failed after every retry by the controller: why; left alone until it runs again. */
    escalated: Type.Optional(Reason),
  },
  { additionalProperties: false },
);
export type ServiceView = Static<typeof ServiceView>;

/** Admin API: `GET /v1/services?host=H&state=S` (state is the observed state). */
export const ServiceListQuery = Type.Object(
  { host: Type.Optional(Name), state: Type.Optional(ServiceState) },
  { additionalProperties: false },
);
export type ServiceListQuery = Static<typeof ServiceListQuery>;

/** An instance that waits for a host (`pending` in `corral controller services`). */
export const PendingView = Type.Object(
  { service: ServiceName, reason: Reason, since: Timestamp },
  { additionalProperties: false },
);
export type PendingView = Static<typeof PendingView>;

export const ServiceListResponse = Type.Object(
  {
    services: Type.Array(ServiceView, { maxItems: 1_000_000 }),
    /** Instances of the spec no host can take yet (left out when `host` or `state` is asked for). */
    pending: Type.Optional(Type.Array(PendingView, { maxItems: 1_000_000 })),
  },
  { additionalProperties: false },
);
export type ServiceListResponse = Static<typeof ServiceListResponse>;

/**
 * Admin API: `POST /v1/teardown`. Removes deployed services from the desired state (all of
 * them, those of one host, one service, or one service on one host) and sends the affected
 * hosts their new sets.
 */
export const ServiceTeardownRequest = Type.Object(
  { host: Type.Optional(Name), service: Type.Optional(ServiceName) },
  { additionalProperties: false },
);
export type ServiceTeardownRequest = Static<typeof ServiceTeardownRequest>;

export const ServiceTeardownResponse = Type.Object(
  {
    /** Null when nothing was deployed, so there was nothing to do. */
    operationId: Type.Union([Type.String({ maxLength: 64 }), Type.Null()]),
    removed: Type.Array(Type.Object({ service: ServiceName, host: Name }, { additionalProperties: false }), {
      maxItems: 1_000_000,
    }),
    hosts: Type.Array(HostDispatchResult, { maxItems: 10_000 }),
    ok: Type.Boolean(),
  },
  { additionalProperties: false },
);
export type ServiceTeardownResponse = Static<typeof ServiceTeardownResponse>;

import { Type, type Static } from '@sinclair/typebox';
import { NAME_RE, SERVICE_INSTANCE_RE } from './common.js';

/**
 * What a worker runs for one service. The deploy work embeds exactly this in deployment specs
 * (and adds placement on top); the controller sends each host its whole set in an apply.
 *
 * Strings may use host variables, resolved on the worker, never on the controller:
 * `${host.name}`, `${host.id}`, `${host.address}`, `${host.interface}` (the interface of the
 * default route). Any other `${…}` is a validation error naming the field; `$${` writes a
 * literal `${`.
 */
export const SERVICE_RUNTIMES = ['process', 'container'] as const;
export type ServiceRuntime = (typeof SERVICE_RUNTIMES)[number];
export const PULL_POLICIES = ['never', 'missing', 'always'] as const;
export const RESTART_POLICIES = ['always', 'on-failure', 'never'] as const;
export type RestartPolicy = (typeof RESTART_POLICIES)[number];

export const MAX_SERVICE_ARGS = 64;
export const MAX_SERVICE_ENV = 64;
export const MAX_SERVICE_STRING_CHARS = 4096;

const Text = Type.String({ maxLength: MAX_SERVICE_STRING_CHARS });
const Path = Type.String({ minLength: 1, maxLength: 1024 });
const Interval = Type.Integer({ minimum: 100, maximum: 3_600_000 });
const Timeout = Type.Integer({ minimum: 50, maximum: 600_000 });
const ProbeTiming = {
  /** Time between probes, in ms. */
  intervalMs: Type.Optional(Interval),
  /** How long one probe may take, in ms. */
  timeoutMs: Type.Optional(Timeout),
  /** Consecutive failures before the service is `degraded` (default 3). */
  failureThreshold: Type.Optional(Type.Integer({ minimum: 1, maximum: 100 })),
};

export const CommandHealthCheck = Type.Object(
  {
    type: Type.Literal('command'),
    command: Path,
    args: Type.Optional(Type.Array(Text, { maxItems: MAX_SERVICE_ARGS })),
    ...ProbeTiming,
  },
  { additionalProperties: false },
);
export const TcpHealthCheck = Type.Object(
  {
    type: Type.Literal('tcp'),
    host: Type.Optional(Type.String({ minLength: 1, maxLength: 253 })),
    port: Type.Integer({ minimum: 1, maximum: 65535 }),
    ...ProbeTiming,
  },
  { additionalProperties: false },
);
export const HttpHealthCheck = Type.Object(
  {
    type: Type.Literal('http'),
    /** An http:// URL; any 2xx or 3xx answer is healthy. */
    url: Type.String({ minLength: 8, maxLength: 2048, pattern: '^http://' }),
    ...ProbeTiming,
  },
  { additionalProperties: false },
);
export const HealthCheck = Type.Union([CommandHealthCheck, TcpHealthCheck, HttpHealthCheck]);
export type HealthCheck = Static<typeof HealthCheck>;

export const ENV_NAME_RE = /^[A-Za-z_][A-Za-z0-9_]{0,127}$/;

/** Service names are at most 48 characters: they travel as the RFC 5424 APP-NAME. */
export const MAX_SERVICE_NAME_CHARS = 48;
/** Instances of one deployment service, at most (`name#1` … `name#999`: SERVICE_INSTANCE_RE). */
export const MAX_SERVICE_COUNT = 999;
export { SERVICE_INSTANCE_RE };
export const ServiceName = Type.String({
  pattern: SERVICE_INSTANCE_RE.source,
  minLength: 1,
  maxLength: MAX_SERVICE_NAME_CHARS,
});
/** The name an operator gives a deployment service (instances add `#k`). */
export const BaseServiceName = Type.String({
  pattern: NAME_RE.source,
  minLength: 1,
  maxLength: MAX_SERVICE_NAME_CHARS,
});

/** Fields both runtimes share. */
const Common = {
  name: ServiceName,
  env: Type.Record(Type.String({ pattern: ENV_NAME_RE.source }), Text, {
    maxProperties: MAX_SERVICE_ENV,
  }),
  restart: Type.Union(RESTART_POLICIES.map((r) => Type.Literal(r))),
  /** `command` runs inside the container for `runtime: container`, beside the process otherwise. */
  healthCheck: Type.Optional(HealthCheck),
  /** Time between SIGTERM and SIGKILL when stopping, in ms (default 10 s). */
  stopGraceMs: Type.Optional(Type.Integer({ minimum: 0, maximum: 300_000 })),
};

/** Bytes (`512m`, `1g`, `65536`): a memory limit. */
export const MEMORY_RE = /^[1-9][0-9]{0,15}[kmg]?$/;
export const Memory = Type.String({ pattern: MEMORY_RE.source, maxLength: 17 });
/** CPUs as a decimal (`0.5`, `2`). */
export const Cpus = Type.Number({ exclusiveMinimum: 0, maximum: 1024 });
const UserName = Type.String({ pattern: '^[A-Za-z0-9_][A-Za-z0-9_.-]{0,31}$' });

export const ProcessServiceSpec = Type.Object(
  {
    ...Common,
    runtime: Type.Literal('process'),
    /** Executable: an absolute path, or a name looked up in PATH. */
    command: Path,
    args: Type.Array(Text, { maxItems: MAX_SERVICE_ARGS }),
    workingDir: Type.Optional(Path),
    /** Run as this user and group (name or number); only an agent running as root may. */
    user: Type.Optional(UserName),
    group: Type.Optional(UserName),
    /** Memory and CPU limits, through a cgroup the agent can write (refused when it has none). */
    memory: Type.Optional(Memory),
    cpus: Type.Optional(Cpus),
    /** Octal file mode creation mask, as `0027`. */
    umask: Type.Optional(Type.String({ pattern: '^0?[0-7]{3}$' })),
  },
  { additionalProperties: false },
);
export type ProcessServiceSpec = Static<typeof ProcessServiceSpec>;

/** `[HOST_ADDRESS:]HOST_PORT:CONTAINER_PORT[/tcp|/udp]`; the address may be `${host.address}`. */
export const PORT_RE = /^(?:(.+):)?([0-9]{1,5}):([0-9]{1,5})(?:\/(tcp|udp))?$/;
/** `SOURCE:TARGET[:ro]`: SOURCE an absolute host path (bind mount) or a volume name. */
export const VOLUME_RE = /^([^:]+):(\/[^:]*)(?::(ro|rw))?$/;
export const VOLUME_NAME_RE = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$/;
export const MAX_CONTAINER_PORTS = 64;
export const MAX_CONTAINER_VOLUMES = 64;

/** An image reference (`repo/name:tag` or `name@sha256:…`). */
export const ImageReference = Type.String({
  minLength: 1,
  maxLength: 512,
  pattern: '^[A-Za-z0-9][A-Za-z0-9._/:@-]*$',
});

export const ContainerServiceSpec = Type.Object(
  {
    ...Common,
    runtime: Type.Literal('container'),
    image: ImageReference,
    /** When the image is fetched from its registry: `missing` (default), `always`, or `never`. */
    pull: Type.Optional(Type.Union(PULL_POLICIES.map((p) => Type.Literal(p)))),
    /** Replaces the image's entrypoint, when given. */
    command: Type.Optional(Path),
    /** Replaces the image's arguments (CMD), when given. */
    args: Type.Optional(Type.Array(Text, { maxItems: MAX_SERVICE_ARGS })),
    ports: Type.Optional(
      Type.Array(Type.String({ maxLength: 300, pattern: PORT_RE.source }), { maxItems: MAX_CONTAINER_PORTS }),
    ),
    volumes: Type.Optional(
      Type.Array(Type.String({ maxLength: 2100, pattern: VOLUME_RE.source }), {
        maxItems: MAX_CONTAINER_VOLUMES,
      }),
    ),
    /** `user`, `user:group`, `uid` or `uid:gid` inside the container. */
    user: Type.Optional(Type.String({ minLength: 1, maxLength: 65, pattern: '^[A-Za-z0-9_.:-]+$' })),
    memory: Type.Optional(Memory),
    cpus: Type.Optional(Cpus),
    /** `host`, or the name of an existing network; the engine's default when absent. */
    network: Type.Optional(
      Type.String({ minLength: 1, maxLength: 128, pattern: '^[A-Za-z0-9][A-Za-z0-9_.-]*$' }),
    ),
  },
  { additionalProperties: false },
);
export type ContainerServiceSpec = Static<typeof ContainerServiceSpec>;

export const ServiceSpec = Type.Union([ProcessServiceSpec, ContainerServiceSpec]);
export type ServiceSpec = Static<typeof ServiceSpec>;

/** The schema of each runtime's spec, for errors that name the right fields. */
export const SERVICE_SPEC_BY_RUNTIME = {
  process: ProcessServiceSpec,
  container: ContainerServiceSpec,
} as const satisfies Record<ServiceRuntime, unknown>;

/**
 * The problem with `runtime` in a would-be spec, naming the allowed values, or undefined when
 * it names a known runtime. A union's schema errors say only "expected union"; this says which.
 */
export function runtimeProblem(value: unknown, defaultRuntime?: ServiceRuntime): string | undefined {
  if (typeof value !== 'object' || value === null) return undefined;
  const runtime = (value as { runtime?: unknown }).runtime ?? defaultRuntime;
  if ((SERVICE_RUNTIMES as readonly unknown[]).includes(runtime)) return undefined;
  return `runtime must be one of ${SERVICE_RUNTIMES.join(', ')}${runtime === undefined ? '' : ` (got ${JSON.stringify(runtime).slice(0, 40)})`}`;
}

/** The host variables a spec may use. */
export const HOST_VARIABLES = ['host.name', 'host.id', 'host.address', 'host.interface'] as const;
export type HostVariable = (typeof HOST_VARIABLES)[number];

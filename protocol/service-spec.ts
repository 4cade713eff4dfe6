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
export const SERVICE_RUNTIMES = ['process'] as const;
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

export const ServiceSpec = Type.Object(
  {
    name: ServiceName,
    runtime: Type.Union(SERVICE_RUNTIMES.map((r) => Type.Literal(r))),
    /** Executable: an absolute path, or a name looked up in PATH. */
    command: Path,
    args: Type.Array(Text, { maxItems: MAX_SERVICE_ARGS }),
    env: Type.Record(Type.String({ pattern: ENV_NAME_RE.source }), Text, {
      maxProperties: MAX_SERVICE_ENV,
    }),
    workingDir: Type.Optional(Path),
    restart: Type.Union(RESTART_POLICIES.map((r) => Type.Literal(r))),
    healthCheck: Type.Optional(HealthCheck),
    /** Time between SIGTERM and SIGKILL when stopping, in ms (default 10 s). */
    stopGraceMs: Type.Optional(Type.Integer({ minimum: 0, maximum: 300_000 })),
  },
  { additionalProperties: false },
);
export type ServiceSpec = Static<typeof ServiceSpec>;

/** The host variables a spec may use. */
export const HOST_VARIABLES = ['host.name', 'host.id', 'host.address', 'host.interface'] as const;
export type HostVariable = (typeof HOST_VARIABLES)[number];

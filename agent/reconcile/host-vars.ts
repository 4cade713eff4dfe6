import { readFile } from 'node:fs/promises';
import { CorralError, ErrorCode } from '../../protocol/errors.js';
import type { HealthCheck, HostVariable, ServiceSpec } from '../../protocol/service-spec.js';

/** What `${host.*}` resolves to on this worker. */
export interface HostFacts {
  readonly name: string;
  readonly id: string;
  readonly address: string;
  /** The default route's interface; undefined when the host has no default route. */
  readonly interface: string | undefined;
}

/**
 * The interface of the IPv4 default route, from /proc/net/route (destination 00000000 with
 * the lowest metric), or undefined when there is none.
 */
export function defaultRouteInterface(routeTable: string): string | undefined {
  let best: { iface: string; metric: number } | undefined;
  for (const line of routeTable.split('\n').slice(1)) {
    const cols = line.trim().split(/\s+/);
    const [iface, destination, , flags, , , metric, mask] = cols;
    if (!iface || destination !== '00000000' || mask !== '00000000') continue;
    if ((parseInt(flags ?? '0', 16) & 0x1) === 0) continue; // RTF_UP
    const m = Number(metric ?? 0);
    if (!best || m < best.metric) best = { iface, metric: m };
  }
  return best?.iface;
}

export async function readDefaultRouteInterface(path = '/proc/net/route'): Promise<string | undefined> {
  try {
    return defaultRouteInterface(await readFile(path, 'utf8'));
  } catch (e: unknown) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw e;
  }
}

const VARIABLE_RE = /\$\$\{|\$\{([^}]*)\}|\$\{/g;

/**
 * Replaces `${host.*}` in `value`. `$${` is a literal `${`. Throws CORRAL_ERR_VALIDATION
 * naming `field` for an unknown variable, an unterminated `${`, or a host fact this host
 * does not have.
 */
export function resolveString(value: string, facts: HostFacts, field: string): string {
  return value.replace(VARIABLE_RE, (match: string, name: string | undefined) => {
    if (match === '$${') return '${';
    if (name === undefined) throw invalid(field, 'has an unterminated ${');
    const resolved = lookup(name.trim(), facts);
    if (resolved === undefined) {
      throw invalid(
        field,
        isHostVariable(name.trim())
          ? `uses \${${name}}, which this host cannot resolve`
          : `uses unknown variable \${${name}}`,
      );
    }
    return resolved;
  });
}

function isHostVariable(name: string): name is HostVariable {
  return name === 'host.name' || name === 'host.id' || name === 'host.address' || name === 'host.interface';
}

function lookup(name: string, facts: HostFacts): string | undefined {
  switch (name) {
    case 'host.name':
      return facts.name;
    case 'host.id':
      return facts.id;
    case 'host.address':
      return facts.address;
    case 'host.interface':
      return facts.interface;
    default:
      return undefined;
  }
}

function invalid(field: string, what: string): CorralError {
  return new CorralError(ErrorCode.VALIDATION, `${field} ${what}`);
}

function resolveCheck(check: HealthCheck, facts: HostFacts, field: string): HealthCheck {
  switch (check.type) {
    case 'command':
      return {
        ...check,
        command: resolveString(check.command, facts, `${field}/command`),
        ...(check.args && {
          args: check.args.map((a, i) => resolveString(a, facts, `${field}/args/${i}`)),
        }),
      };
    case 'tcp':
      return check.host === undefined
        ? check
        : { ...check, host: resolveString(check.host, facts, `${field}/host`) };
    case 'http':
      return { ...check, url: resolveString(check.url, facts, `${field}/url`) };
  }
}

/**
 * A spec with every host variable resolved. `where` prefixes field names in errors
 * (`body/services/3` gives `body/services/3/env/PORT uses unknown variable ${host.port}`).
 */
export function resolveSpec(spec: ServiceSpec, facts: HostFacts, where: string): ServiceSpec {
  const env: Record<string, string> = {};
  for (const [key, value] of Object.entries(spec.env)) {
    env[key] = resolveString(value, facts, `${where}/env/${key}`);
  }
  const list = (values: readonly string[], field: string): string[] =>
    values.map((v, i) => resolveString(v, facts, `${where}/${field}/${i}`));
  const healthCheck = spec.healthCheck && {
    healthCheck: resolveCheck(spec.healthCheck, facts, `${where}/healthCheck`),
  };
  if (spec.runtime === 'container') {
    return {
      ...spec,
      env,
      ...(spec.command !== undefined && { command: resolveString(spec.command, facts, `${where}/command`) }),
      ...(spec.args && { args: list(spec.args, 'args') }),
      ...(spec.ports && { ports: list(spec.ports, 'ports') }),
      ...(spec.volumes && { volumes: list(spec.volumes, 'volumes') }),
      ...healthCheck,
    };
  }
  return {
    ...spec,
    command: resolveString(spec.command, facts, `${where}/command`),
    args: list(spec.args, 'args'),
    env,
    ...(spec.workingDir !== undefined && {
      workingDir: resolveString(spec.workingDir, facts, `${where}/workingDir`),
    }),
    ...healthCheck,
  };
}

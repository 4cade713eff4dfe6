import { sql, type Kysely } from 'kysely';
import { SERVICE_STATES } from '../../protocol/heartbeat.js';
import { OPERATION_KINDS, OPERATION_STATES } from '../../protocol/operations.js';
import { dialectOf } from '../db/dialect-of.js';
import type { ControllerDatabase } from '../db/schema.js';
import { escapeLabel } from './metrics.js';

/** A number as the exposition writes it (a value stored as something else counts as absent). */
const num = (v: unknown): string | undefined =>
  typeof v === 'number' && Number.isFinite(v) ? String(v) : undefined;

/**
 * Above this many hosts with a heartbeat, `/metrics` leaves the per-host gauges out (they are
 * three series per host: at 60k hosts 180k series, 10 MB and about a second per scrape) and
 * `/metrics/hosts` serves them alone, for a scrape job of its own at a longer interval.
 */
export const PER_HOST_SERIES_MAX_HOSTS = 1_000;

/**
 * The per-host gauges from the last heartbeat of every active host (its name escaped, since a
 * worker chose it): one query reading three JSON fields of each host row, no host view built.
 */
export async function hostGaugeLines(db: Kysely<ControllerDatabase>): Promise<string[]> {
  // One numeric field of the metrics JSON text, in the database's own JSON functions.
  const field =
    dialectOf(db) === 'postgres'
      ? (key: string) => sql<unknown>`(metrics::json->>${sql.lit(key)})::float8`
      : (key: string) => sql<unknown>`json_extract(metrics, ${sql.lit(`$.${key}`)})`;
  const hosts = await db
    .selectFrom('hosts')
    .select([
      'name',
      field('load1').as('load1'),
      field('memAvailableBytes').as('mem'),
      field('diskFreeBytes').as('disk'),
    ])
    .where('decommissioned_at', 'is', null)
    .where('metrics', 'is not', null)
    .execute();
  const load: string[] = [];
  const mem: string[] = [];
  const disk: string[] = [];
  for (const h of hosts) {
    const label = `{host="${escapeLabel(h.name)}"}`;
    const [l, m, d] = [num(h.load1), num(h.mem), num(h.disk)];
    if (l !== undefined) load.push(`corral_host_load1${label} ${l}`);
    if (m !== undefined) mem.push(`corral_host_memory_available_bytes${label} ${m}`);
    if (d !== undefined) disk.push(`corral_host_disk_free_bytes${label} ${d}`);
  }
  return [
    '# HELP corral_host_load1 One-minute load average of each active host, from its last heartbeat.',
    '# TYPE corral_host_load1 gauge',
    ...load,
    '# HELP corral_host_memory_available_bytes Memory available on each active host, from its last heartbeat.',
    '# TYPE corral_host_memory_available_bytes gauge',
    ...mem,
    '# HELP corral_host_disk_free_bytes Free disk of each active host, from its last heartbeat.',
    '# TYPE corral_host_disk_free_bytes gauge',
    ...disk,
  ];
}

/** The state nearly every service of a healthy fleet is in: counted by difference. */
const USUAL_SERVICE_STATE = 'running';

/**
 * Service instances on active hosts by observed state, without a pass over every row: the
 * table's size (SQLite counts a whole b-tree page by page, not entry by entry), the rows in
 * any other state than `running` (the partial index `service_observed_unusual`, which holds
 * only those; the state is written as a literal, or SQLite cannot tell the index covers the
 * query), less the rows of decommissioned hosts (their ids from the `hosts_decommissioned`
 * index, their rows by the primary key); `running` is what is left. So the cost follows the
 * services that are not running and those of decommissioned hosts, never a host lookup per
 * service row (the join it replaces ran row by row on SQLite: about a second at 60k hosts
 * with three services each).
 */
export async function servicesByState(db: Kysely<ControllerDatabase>): Promise<Map<string, number>> {
  const total = await db
    .selectFrom('service_observed')
    .select((eb) => eb.fn.countAll<number>().as('n'))
    .executeTakeFirst();
  const others = await db
    .selectFrom('service_observed')
    .select(['state', (eb) => eb.fn.countAll<number>().as('n')])
    .where('state', '<>', sql.lit(USUAL_SERVICE_STATE))
    .groupBy('state')
    .execute();
  const gone = await db
    .selectFrom('service_observed')
    .select(['state', (eb) => eb.fn.countAll<number>().as('n')])
    .where('host_id', 'in', (eb) =>
      eb.selectFrom('hosts').select('id').where('decommissioned_at', 'is not', null),
    )
    .groupBy('state')
    .execute();
  const out = new Map<string, number>();
  let usual = Number(total?.n ?? 0);
  for (const r of others) {
    out.set(r.state, Number(r.n));
    usual -= Number(r.n);
  }
  out.set(USUAL_SERVICE_STATE, usual);
  for (const r of gone) out.set(r.state, (out.get(r.state) ?? 0) - Number(r.n));
  // Statements apart may see different commits: a count never goes below none.
  for (const [state, n] of out) if (n <= 0) out.delete(state);
  return out;
}

/**
 * The fleet's series, read with one aggregate query each on `db` (the read-only connection):
 * the per-host gauges when `heartbeatHosts` (active hosts with a heartbeat) is at most
 * PER_HOST_SERIES_MAX_HOSTS, else how many hosts they were left out for; services by observed
 * state, operations by kind and outcome, and pending approvals.
 */
export async function fleetMetricLines(
  db: Kysely<ControllerDatabase>,
  nowIso: string,
  heartbeatHosts: number,
): Promise<string[]> {
  const perHost = heartbeatHosts <= PER_HOST_SERIES_MAX_HOSTS;
  const gauges = perHost ? await hostGaugeLines(db) : [];
  const services = await servicesByState(db);
  const operations = await db
    .selectFrom('operations')
    .select(['kind', 'state', (eb) => eb.fn.countAll<number>().as('n')])
    .groupBy(['kind', 'state'])
    .execute();
  const approvals = await db
    .selectFrom('approvals')
    .select((eb) => eb.fn.countAll<number>().as('n'))
    .where('state', '=', 'pending')
    .where('expires_at', '>', nowIso)
    .executeTakeFirst();

  const byState = new Map<string, number>(SERVICE_STATES.map((s) => [s, 0]));
  for (const [state, n] of services) byState.set(state, n);
  const ops = new Map<string, number>();
  for (const kind of OPERATION_KINDS) for (const state of OPERATION_STATES) ops.set(`${kind}\0${state}`, 0);
  for (const o of operations) ops.set(`${o.kind}\0${o.state}`, Number(o.n));
  return [
    ...gauges,
    '# HELP corral_host_series_omitted_hosts Hosts whose per-host gauges this scrape left out (too many hosts: read /metrics/hosts).',
    '# TYPE corral_host_series_omitted_hosts gauge',
    `corral_host_series_omitted_hosts ${perHost ? 0 : heartbeatHosts}`,
    '# HELP corral_services Service instances on active hosts, by the state their agents last reported.',
    '# TYPE corral_services gauge',
    ...[...byState].map(([state, n]) => `corral_services{state="${escapeLabel(state)}"} ${n}`),
    '# HELP corral_operations Operations kept, by kind and outcome (running until they end).',
    '# TYPE corral_operations gauge',
    ...[...ops].map(([key, n]) => {
      const [kind = '', state = ''] = key.split('\0');
      return `corral_operations{kind="${escapeLabel(kind)}",outcome="${escapeLabel(state)}"} ${n}`;
    }),
    '# HELP corral_approvals_pending Approval requests waiting for operators (not yet expired).',
    '# TYPE corral_approvals_pending gauge',
    `corral_approvals_pending ${Number(approvals?.n ?? 0)}`,
  ];
}

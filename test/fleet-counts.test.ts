import { sql } from 'kysely';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { describeEachDialect } from './dialects.js';
import { openDatabase, openReadConnection, type ControllerDb } from '../controller/db/open-database.js';
import { countHostsByStatus } from '../controller/fleet/host-store.js';
import { fleetMetricLines, servicesByState } from '../controller/http/fleet-metrics.js';
import { DEFAULT_HEARTBEAT_INTERVAL_MS } from '../protocol/constants.js';
import { SERVICE_STATES } from '../protocol/heartbeat.js';
import { OPERATION_KINDS, OPERATION_STATES } from '../protocol/operations.js';
import { HOST_STATUSES, type HostStatus } from '../protocol/host.js';

/**
 * The counts `/metrics` serves (hosts by status, services on active hosts by state,
 * operations by kind and outcome), read through the read connection of a known fleet on
 * both dialects and checked against the same counts made in JavaScript from the rows as
 * written: decommissioned hosts keep their service rows, and those are not counted.
 */
const NOW_MS = Date.parse('2026-12-04T03:00:00.000Z');
const INTERVAL_MS = DEFAULT_HEARTBEAT_INTERVAL_MS;
const LAST_SEEN: Record<HostStatus, string | null> = {
  pending: null,
  online: new Date(NOW_MS - 1_000).toISOString(),
  stale: new Date(NOW_MS - 2.5 * INTERVAL_MS).toISOString(),
  offline: new Date(NOW_MS - 3_600_000).toISOString(),
  decommissioned: new Date(NOW_MS - 3_600_000).toISOString(),
};
const HOSTS = 230;
const statusOf = (i: number): HostStatus =>
  // Uneven shares, so a count that took the wrong status's rows would differ.
  i % 11 === 0
    ? 'decommissioned'
    : i % 7 === 0
      ? 'pending'
      : i % 5 === 0
        ? 'stale'
        : i % 3 === 0
          ? 'offline'
          : 'online';
const serviceStateOf = (i: number, k: number) =>
  SERVICE_STATES[(i * 3 + k) % SERVICE_STATES.length] ?? 'running';

describeEachDialect((dialect) => {
  let db: ControllerDb;
  let reader: ControllerDb;
  const expectedHosts = Object.fromEntries(HOST_STATUSES.map((s) => [s, 0])) as Record<HostStatus, number>;
  const expectedServices = new Map<string, number>(SERVICE_STATES.map((s) => [s, 0]));
  const expectedOps = new Map<string, number>();

  beforeEach(async () => {
    const target = await dialect.newDatabase();
    db = await openDatabase(target);
    for (const s of HOST_STATUSES) expectedHosts[s] = 0;
    for (const s of SERVICE_STATES) expectedServices.set(s, 0);
    expectedOps.clear();
    const hosts = [];
    const services = [];
    for (let i = 0; i < HOSTS; i++) {
      const status = statusOf(i);
      expectedHosts[status]++;
      const id = `id-${i}`;
      hosts.push({
        id,
        name: `h-${i}`,
        address: '10.0.0.1',
        agent_port: 8765,
        updater_port: 8766,
        sans: '[]',
        labels: '{}',
        enrolled_at: '2024-01-01T00:00:00.000Z',
        enrolled_via: 'bundle',
        last_seen: LAST_SEEN[status],
        agent_version: null,
        generation: 0,
        metrics: null,
        decommissioned_at: status === 'decommissioned' ? '2024-02-01T00:00:00.000Z' : null,
      });
      if (status === 'pending') continue;
      for (let k = 0; k < 1 + (i % 4); k++) {
        const state = serviceStateOf(i, k);
        if (status !== 'decommissioned') expectedServices.set(state, (expectedServices.get(state) ?? 0) + 1);
        services.push({
          host_id: id,
          service: `svc-${k}`,
          state,
          restarts: 0,
          last_error: null,
          pid: null,
          since: null,
          updated_at: '2024-02-01T00:00:00.000Z',
        });
      }
    }
    for (let i = 0; i < hosts.length; i += 100) {
      await db
        .insertInto('hosts')
        .values(hosts.slice(i, i + 100))
        .execute();
    }
    for (let i = 0; i < services.length; i += 100) {
      await db
        .insertInto('service_observed')
        .values(services.slice(i, i + 100))
        .execute();
    }
    const kinds = ['deploy', 'teardown', 'deploy', 'update', 'deploy'] as const;
    const states = ['succeeded', 'failed', 'succeeded', 'running', 'partial', 'succeeded'] as const;
    for (let i = 0; i < 17; i++) {
      const kind = kinds[i % kinds.length] ?? 'deploy';
      const state = states[i % states.length] ?? 'succeeded';
      expectedOps.set(`${kind}/${state}`, (expectedOps.get(`${kind}/${state}`) ?? 0) + 1);
      await db
        .insertInto('operations')
        .values({
          id: `op-${i}`,
          kind,
          state,
          actor: 'a',
          target: 't',
          created_at: '2024-02-01T00:00:00.000Z',
          finished_at: null,
          reason: null,
          summary: '{}',
        })
        .execute();
    }
    reader = await openReadConnection(target);
  });
  afterEach(async () => {
    await reader.destroy();
    await db.destroy();
  });

  describe('the counts /metrics serves', () => {
    it('counts hosts by status as the rows say', async () => {
      expect(await countHostsByStatus(reader, { nowMs: NOW_MS, intervalMs: INTERVAL_MS })).toEqual(
        expectedHosts,
      );
      expect(Object.values(expectedHosts).every((n) => n > 0)).toBe(true);
    });

    it('counts the services of active hosts by state, leaving out those of decommissioned hosts', async () => {
      const counted = await servicesByState(reader);
      for (const [state, n] of expectedServices) expect([state, counted.get(state) ?? 0]).toEqual([state, n]);
      const lines = await fleetMetricLines(reader, new Date(NOW_MS).toISOString(), 10_000);
      for (const [state, n] of expectedServices)
        expect(lines).toContain(`corral_services{state="${state}"} ${n}`);
      for (const kind of OPERATION_KINDS) {
        for (const outcome of OPERATION_STATES) {
          const n = expectedOps.get(`${kind}/${outcome}`) ?? 0;
          expect(lines).toContain(`corral_operations{kind="${kind}",outcome="${outcome}"} ${n}`);
        }
      }
    });

    it('still counts right once a host with services is decommissioned', async () => {
      const rows = await db
        .selectFrom('service_observed')
        .select('state')
        .where('host_id', '=', 'id-1')
        .execute();
      expect(rows.length).toBeGreaterThan(0);
      await db
        .updateTable('hosts')
        .set({ decommissioned_at: '2024-03-01T00:00:00.000Z' })
        .where('id', '=', 'id-1')
        .execute();
      for (const r of rows) expectedServices.set(r.state, (expectedServices.get(r.state) ?? 0) - 1);
      const counted = await servicesByState(reader);
      for (const [state, n] of expectedServices) expect([state, counted.get(state) ?? 0]).toEqual([state, n]);
    });

    if (dialect.name === 'sqlite') {
      it('reads each count from an index, never host rows one by one', async () => {
        const plan = async (q: { compile(): { sql: string; parameters: readonly unknown[] } }) => {
          const c = q.compile();
          const r = await sql<{ detail: string }>`EXPLAIN QUERY PLAN ${sql.raw(c.sql)}`.execute(reader);
          return r.rows.map((x) => x.detail).join(' | ');
        };
        const size = await plan(
          reader.selectFrom('service_observed').select((eb) => eb.fn.countAll().as('n')),
        );
        expect(size).toContain('SCAN service_observed USING COVERING INDEX');
        const others = await plan(
          reader
            .selectFrom('service_observed')
            .select(['state', (eb) => eb.fn.countAll().as('n')])
            .where('state', '<>', sql.lit('running'))
            .groupBy('state'),
        );
        expect(others).toContain('COVERING INDEX service_observed_unusual');
        // Running services are still found as before the index (it holds none of them).
        const running = await plan(
          reader.selectFrom('service_observed').select('host_id').where('state', '=', sql.lit('running')),
        );
        expect(running).not.toContain('service_observed_unusual');
        const gone = await plan(
          reader
            .selectFrom('service_observed')
            .select(['state', (eb) => eb.fn.countAll().as('n')])
            .where('host_id', 'in', (eb) =>
              eb.selectFrom('hosts').select('id').where('decommissioned_at', 'is not', null),
            )
            .groupBy('state'),
        );
        expect(gone).toContain('COVERING INDEX hosts_decommissioned');
        expect(gone).not.toMatch(/SCAN (hosts|service_observed)\b/);
      });
    }
  });
});

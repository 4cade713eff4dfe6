import { randomUUID } from 'node:crypto';
import { pino } from 'pino';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { HeartbeatRequest, type ServiceStatus } from '../protocol/heartbeat.js';
import { Value } from '@sinclair/typebox/value';
import { ErrorCode } from '../protocol/errors.js';
import { describeEachDialect } from './dialects.js';
import { openDatabase, type ControllerDb } from '../controller/db/open-database.js';
import { listServiceViews } from '../controller/deploy/service-views.js';
import { createHeartbeatWriter } from '../controller/fleet/heartbeat-writer.js';
import { hostDetail } from '../controller/fleet/host-store.js';

describeEachDialect((dialect) => {
  let db: ControllerDb;
  const log = pino({ level: 'silent' });
  const clock = { now: () => Date.parse('2024-05-01T00:00:00.000Z') };

  beforeEach(async () => {
    db = await openDatabase(await dialect.newDatabase());
    for (let i = 0; i < 20; i++) {
      await db
        .insertInto('hosts')
        .values({
          id: `h-${i}`,
          name: `n-${i}`,
          address: '10.0.0.1',
          agent_port: 8765,
          updater_port: 8766,
          sans: '[]',
          labels: '{}',
          enrolled_at: '2024-01-01T00:00:00.000Z',
          enrolled_via: 'bundle',
          last_seen: null,
          agent_version: null,
          generation: 0,
          metrics: null,
          decommissioned_at: i === 19 ? '2024-02-01T00:00:00.000Z' : null,
        })
        .execute();
    }
  });
  afterEach(async () => {
    await db.destroy();
  });

  const hb = (hostId: string, over: Partial<HeartbeatRequest> = {}): HeartbeatRequest => ({
    hostId,
    agentVersion: '1.0.0',
    generation: 2,
    metrics: {
      load1: 1,
      load5: 1,
      load15: 1,
      memTotalBytes: 2,
      memAvailableBytes: 1,
      diskTotalBytes: 2,
      diskFreeBytes: 1,
      uptimeSeconds: 5,
    },
    services: [],
    events: [],
    ...over,
  });

  describe('heartbeat writer', () => {
    it('writes many hosts in few transactions and acknowledges events once they are stored', async () => {
      const writer = createHeartbeatWriter({ db, clock, log, flushMs: 20 });
      const events = [{ id: randomUUID(), type: 'agent-started' as const, time: '2024-05-01T00:00:00.000Z' }];
      const acks = await Promise.all(
        Array.from({ length: 19 }, (_, i) =>
          writer.submit(
            `h-${i}`,
            hb(`h-${i}`, {
              events: i === 0 ? events : [],
              services: [
                { name: 'api', state: 'running', restarts: 0, lastError: null, pid: 9, since: null },
              ],
            }),
          ),
        ),
      );
      expect(acks[0]).toEqual([events[0]!.id]);
      expect(writer.stats()).toMatchObject({ written: 19, pending: 0 });
      expect(writer.stats().batches).toBeLessThan(19);
      const rows = await db
        .selectFrom('hosts')
        .select(['id', 'last_seen', 'generation'])
        .where('last_seen', 'is not', null)
        .execute();
      expect(rows).toHaveLength(19);
      expect(rows[0]).toMatchObject({ last_seen: '2024-05-01T00:00:00.000Z', generation: 2 });
      expect(await db.selectFrom('service_observed').selectAll().execute()).toHaveLength(19);
      // Re-sent events are acknowledged again and stored once.
      expect(await writer.submit('h-0', hb('h-0', { events }))).toEqual([events[0]!.id]);
      expect(await db.selectFrom('events').selectAll().execute()).toHaveLength(1);
      await writer.close();
    });

    it('never brings a decommissioned host back', async () => {
      const writer = createHeartbeatWriter({ db, clock, log });
      await writer.submit('h-19', hb('h-19'));
      const row = await db
        .selectFrom('hosts')
        .select('last_seen')
        .where('id', '=', 'h-19')
        .executeTakeFirstOrThrow();
      expect(row.last_seen).toBeNull();
      await writer.close();
    });

    it('refuses beyond its bound, writes what is queued on close, and refuses after', async () => {
      const writer = createHeartbeatWriter({ db, clock, log, flushMs: 1000, maxPending: 3 });
      const queued = [0, 1, 2].map((i) => writer.submit(`h-${i}`, hb(`h-${i}`)));
      await expect(writer.submit('h-3', hb('h-3'))).rejects.toMatchObject({ code: ErrorCode.UNAVAILABLE });
      expect(writer.stats().refused).toBe(1);
      await writer.close();
      await expect(Promise.all(queued)).resolves.toHaveLength(3);
      await expect(writer.submit('h-4', hb('h-4'))).rejects.toMatchObject({ code: ErrorCode.UNAVAILABLE });
    });

    it('isolates a heartbeat that cannot be stored: the rest of its batch still lands', async () => {
      const writer = createHeartbeatWriter({ db, clock, log });
      const events = [{ id: randomUUID(), type: 'agent-started' as const, time: 'not-a-time-but-text' }];
      // An event for a host that does not exist breaks the foreign key: the whole batch fails.
      const results = await Promise.allSettled([
        writer.submit('h-1', hb('h-1')),
        writer.submit('nope', hb('nope', { events })),
      ]);
      expect(results.map((r) => r.status)).toEqual(['fulfilled', 'rejected']);
      const row = await db
        .selectFrom('hosts')
        .select('last_seen')
        .where('id', '=', 'h-1')
        .executeTakeFirstOrThrow();
      expect(row.last_seen).not.toBeNull();
      expect(await db.selectFrom('events').selectAll().execute()).toEqual([]);
      await writer.close();
    });
    it("writes a restart's first heartbeats of many hosts together: lists replaced, unlisted rows gone, others kept", async () => {
      const svc = (name: string, restarts = 0) => ({
        name,
        state: 'running' as const,
        restarts,
        lastError: null,
        pid: 7,
        since: null,
      });
      const row = (hostId: string, service: string) => ({
        host_id: hostId,
        service,
        state: 'running',
        restarts: 0,
        last_error: null,
        pid: 1,
        since: null,
        updated_at: '2024-04-01T00:00:00.000Z',
      });
      // What a previous controller left: this writer has seen none of it (a restart).
      await db
        .insertInto('service_observed')
        .values([row('h-0', 'api'), row('h-0', 'old'), row('h-1', 'db'), row('h-5', 'keep')])
        .execute();
      const writer = createHeartbeatWriter({ db, clock, log, flushMs: 50 });
      await Promise.all([
        writer.submit('h-0', hb('h-0', { services: [svc('api', 4), svc('web')] })),
        writer.submit('h-1', hb('h-1', { services: [] })),
        writer.submit('h-2', hb('h-2', { services: [svc('x', 1), svc('x', 2)] })),
      ]);
      expect(writer.stats().batches).toBe(1);
      const rows = await db
        .selectFrom('service_observed')
        .select(['host_id', 'service', 'restarts', 'updated_at'])
        .orderBy('host_id')
        .orderBy('service')
        .execute();
      expect(rows).toEqual([
        { host_id: 'h-0', service: 'api', restarts: 4, updated_at: '2024-05-01T00:00:00.000Z' },
        { host_id: 'h-0', service: 'web', restarts: 0, updated_at: '2024-05-01T00:00:00.000Z' },
        { host_id: 'h-2', service: 'x', restarts: 2, updated_at: '2024-05-01T00:00:00.000Z' },
        { host_id: 'h-5', service: 'keep', restarts: 0, updated_at: '2024-04-01T00:00:00.000Z' },
      ]);
      await writer.close();
    });

    it('stores what runs each service (runtime, image, container id) and shows it in the views', async () => {
      const id = (c: string) => c.repeat(64);
      const web = (containerId: string): ServiceStatus => ({
        name: 'web',
        state: 'running',
        restarts: 0,
        lastError: null,
        pid: null,
        since: null,
        runtime: 'container',
        image: 'corral-test/busybox:1',
        containerId,
      });
      const side: ServiceStatus = {
        name: 'side',
        state: 'running',
        restarts: 0,
        lastError: null,
        pid: 42,
        since: null,
        runtime: 'process',
      };
      // web is desired (its spec names the image); side runs unwanted, so only the report names it.
      await db
        .insertInto('desired_services')
        .values({
          host_id: 'h-0',
          service: 'web',
          spec: JSON.stringify({ name: 'web', runtime: 'container', image: 'corral-test/busybox:1' }),
          spec_hash: '0'.repeat(64),
          updated_at: '2024-04-01T00:00:00.000Z',
        })
        .execute();
      const writer = createHeartbeatWriter({ db, clock, log, flushMs: 1 });
      await writer.submit('h-0', hb('h-0', { services: [web(id('a')), side] }));
      // A new container alone (same state, restarts, pid) is a change the writer stores.
      await writer.submit('h-0', hb('h-0', { services: [web(id('b')), side] }));
      await writer.close();
      const rows = await db
        .selectFrom('service_observed')
        .select(['service', 'runtime', 'image', 'container_id'])
        .orderBy('service')
        .execute();
      expect(rows).toEqual([
        { service: 'side', runtime: 'process', image: null, container_id: null },
        { service: 'web', runtime: 'container', image: 'corral-test/busybox:1', container_id: id('b') },
      ]);

      const live = { nowMs: clock.now(), intervalMs: 10_000 };
      const views = await listServiceViews(db, live);
      expect(views.map((v) => [v.service, v.runtime, v.image, v.containerId])).toEqual([
        ['side', 'process', undefined, undefined],
        ['web', 'container', 'corral-test/busybox:1', id('b')],
      ]);
      const detail = await hostDetail(db, 'n-0', live);
      expect(detail?.services.find((s) => s.name === 'web')).toMatchObject({
        runtime: 'container',
        image: 'corral-test/busybox:1',
        containerId: id('b'),
      });
      expect(detail?.services.find((s) => s.name === 'side')).not.toHaveProperty('containerId');
    });

    it('takes from a worker only a runtime word, an image reference and a full container id', () => {
      const ok = hb('h-0', { services: [web()] });
      expect(Value.Check(HeartbeatRequest, ok)).toBe(true);
      for (const bad of [
        { runtime: 'Container' },
        { runtime: 'x'.repeat(17) },
        { image: 'busybox\u001b[2J' },
        { image: 'busybox latest' },
        { image: `${'a'.repeat(512)}b` },
        { containerId: 'abc123' },
        { containerId: 'A'.repeat(64) },
      ]) {
        expect(Value.Check(HeartbeatRequest, hb('h-0', { services: [{ ...web(), ...bad }] }))).toBe(false);
      }

      function web(): ServiceStatus {
        return {
          name: 'web',
          state: 'running',
          restarts: 0,
          lastError: null,
          pid: null,
          since: null,
          runtime: 'container',
          image: 'registry.example:5000/team/web@sha256:' + 'c'.repeat(64),
          containerId: 'd'.repeat(64),
        };
      }
    });
  });
});

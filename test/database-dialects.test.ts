import { sql } from 'kysely';
import { beforeEach, afterEach, describe, expect, it } from 'vitest';
import { describeEachDialect } from './dialects.js';
import { ControllerErrorCode } from '../controller/errors.js';
import { createEventSink, headCursor, readPage } from '../controller/events/event-log.js';
import {
  describeDatabaseTarget,
  parseDatabaseTarget,
  toDatabaseTarget,
} from '../controller/db/database-target.js';
import { dialectOf, isUniqueViolation } from '../controller/db/dialect-of.js';
import { MIGRATIONS } from '../controller/db/migrations.js';
import { openDatabase, openReadConnection, type ControllerDb } from '../controller/db/open-database.js';

const host = (id: string, name: string, decommissionedAt: string | null = null) => ({
  id,
  name,
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
  decommissioned_at: decommissionedAt,
});

describe('database targets', () => {
  it('reads sqlite:PATH and postgres URLs, and refuses anything else', () => {
    expect(parseDatabaseTarget('sqlite:/var/lib/corral/corral.db')).toEqual({
      kind: 'sqlite',
      path: '/var/lib/corral/corral.db',
    });
    expect(parseDatabaseTarget('postgresql://corral@db:5432/corral')).toEqual({
      kind: 'postgres',
      url: 'postgresql://corral@db:5432/corral',
    });
    expect(toDatabaseTarget('/tmp/x/corral.db')).toEqual({ kind: 'sqlite', path: '/tmp/x/corral.db' });
    for (const bad of ['mysql://x/y', 'sqlite:', '/plain/path', 'postgres://[oops']) {
      expect(() => parseDatabaseTarget(bad)).toThrow(
        expect.objectContaining({ code: ControllerErrorCode.DATABASE_TARGET }),
      );
    }
  });

  it('never shows a password', () => {
    const shown = describeDatabaseTarget(
      parseDatabaseTarget('postgres://corral:s3cret@db/corral?password=s3cret'),
    );
    expect(shown).not.toContain('s3cret');
    expect(shown).toContain('corral:***@db');
  });

  it('an unreachable server is CORRAL_ERR_DATABASE_OPEN without the password', async () => {
    // Port 1 on loopback: nothing listens there.
    const err = await openDatabase('postgres://corral:s3cret@127.0.0.1:1/corral').catch((e: unknown) => e);
    expect(err).toMatchObject({ code: ControllerErrorCode.DATABASE_OPEN });
    expect((err as Error).message).not.toContain('s3cret');
  });
});

describeEachDialect((dialect) => {
  let target: string;
  let db: ControllerDb;
  beforeEach(async () => {
    target = await dialect.newDatabase();
    db = await openDatabase(target);
  });
  afterEach(async () => {
    await db.destroy();
  });

  describe('controller database', () => {
    it('is the dialect it was asked for, and migrating again changes nothing', async () => {
      expect(dialectOf(db)).toBe(dialect.name);
      await db.insertInto('hosts').values(host('h-1', 'web-1')).execute();
      const again = await openDatabase(target);
      try {
        expect(await again.selectFrom('hosts').select(['id', 'name']).execute()).toEqual([
          { id: 'h-1', name: 'web-1' },
        ]);
        const applied = await again
          .selectFrom('kysely_migration' as 'hosts')
          .select('name' as 'id')
          .execute();
        expect(applied).toHaveLength(MIGRATIONS.length);
      } finally {
        await again.destroy();
      }
    });

    it('decodes rows the same on both: numbers for integers and counts, 1/0 for conditions', async () => {
      await db.insertInto('hosts').values(host('h-1', 'web-1')).execute();
      await db
        .updateTable('hosts')
        .set({ generation: 2 ** 40 })
        .execute();
      const row = await db
        .selectFrom('hosts')
        .select((eb) => [
          'generation',
          'eligible',
          'agent_port',
          eb.fn.countAll<number>().over().as('n'),
          sql<number>`${sql.ref('decommissioned_at')} IS NULL`.as('active'),
        ])
        .executeTakeFirstOrThrow();
      expect(row).toEqual({ generation: 2 ** 40, eligible: 1, agent_port: 8765, n: 1, active: 1 });
    });

    it('keeps names unique among active hosts, and tells a unique violation by its code', async () => {
      await db
        .insertInto('hosts')
        .values(host('h-1', 'web-1', '2024-02-01T00:00:00.000Z'))
        .execute();
      await db.insertInto('hosts').values(host('h-2', 'web-1')).execute();
      const dup = await db
        .insertInto('hosts')
        .values(host('h-3', 'web-1'))
        .execute()
        .catch((e: unknown) => e);
      expect(isUniqueViolation(dup)).toBe(true);
      const notNull = await db
        .insertInto('hosts')
        .values({ ...host('h-4', 'web-4'), address: null as unknown as string })
        .execute()
        .catch((e: unknown) => e);
      expect(notNull).toBeInstanceOf(Error);
      expect(isUniqueViolation(notNull)).toBe(false);
    });

    it('refuses pins for a host that does not exist', async () => {
      const pin = {
        fingerprint: 'a'.repeat(64),
        host_id: 'nope',
        role: 'agent',
        not_after: '2030-01-01T00:00:00.000Z',
        active: 1,
        created_at: '2024-01-01T00:00:00.000Z',
        superseded_at: null,
        retired_at: null,
      };
      await expect(db.insertInto('pins').values(pin).execute()).rejects.toThrow(/FOREIGN KEY|foreign key/);
    });

    it('keeps the operation log append-only', async () => {
      await db
        .insertInto('operations')
        .values({
          id: 'op-1',
          kind: 'deploy',
          state: 'running',
          actor: 'a',
          target: 't',
          created_at: 't',
          finished_at: null,
          reason: null,
          summary: '{}',
        })
        .execute();
      await db
        .insertInto('operation_log')
        .values({ operation_id: 'op-1', seq: 1, time: 't', level: 'info', host: null, message: 'm' })
        .execute();
      await expect(db.updateTable('operation_log').set({ message: 'x' }).execute()).rejects.toThrow(
        /operation log is append-only/,
      );
      await expect(db.deleteFrom('operation_log').execute()).rejects.toThrow(/operation log is append-only/);
    });

    it('rolls a transaction back as a whole and serializes concurrent ones', async () => {
      await expect(
        db.transaction().execute(async (trx) => {
          await trx.insertInto('hosts').values(host('h-1', 'a')).execute();
          throw new Error('abort');
        }),
      ).rejects.toThrow('abort');
      expect(await db.selectFrom('hosts').selectAll().execute()).toEqual([]);
      await Promise.all(
        Array.from({ length: 20 }, (_, i) =>
          db.transaction().execute(async (trx) => {
            const n = await trx
              .selectFrom('hosts')
              .select((eb) => eb.fn.countAll<number>().as('n'))
              .executeTakeFirstOrThrow();
            await trx
              .insertInto('hosts')
              .values(host(`h-${i}`, `n-${n.n}`))
              .execute();
          }),
        ),
      );
      const names = (await db.selectFrom('hosts').select('name').execute()).map((r) => r.name).sort();
      expect(new Set(names).size).toBe(20);
    });

    it("fleet event cursors only grow: the head outlives the events' deletion", async () => {
      const sink = createEventSink({ clock: { now: () => 0 } });
      expect(await headCursor(db)).toBe(0);
      await db
        .transaction()
        .execute((trx) => sink.append(trx, [{ kind: 'release.updated' }, { kind: 'release.updated' }]));
      expect(await headCursor(db)).toBe(2);
      await db.deleteFrom('fleet_events').execute();
      await db.transaction().execute((trx) => sink.append(trx, [{ kind: 'release.updated' }]));
      const page = await readPage(db, 0, 10);
      expect(page.events.map((e) => e.cursor)).toEqual([3]);
      expect(page).toMatchObject({ head: 3, truncated: true });
    });

    it('a read connection sees every commit and refuses writes', async () => {
      const reader = await openReadConnection(target);
      try {
        await db.insertInto('hosts').values(host('h-1', 'one')).execute();
        expect(await reader.selectFrom('hosts').select('name').execute()).toEqual([{ name: 'one' }]);
        await expect(reader.insertInto('hosts').values(host('h-2', 'two')).execute()).rejects.toThrow(
          /readonly|read-only|query_only/i,
        );
      } finally {
        await reader.destroy();
      }
    });
  });

  describe('opening', () => {
    it('refuses a database that holds no controller data when it must exist', async () => {
      const empty = await dialect.newDatabase({ empty: true });
      if (dialect.name === 'sqlite') {
        const made = await openDatabase(empty, { migrations: [] });
        await made.destroy();
      }
      await expect(openDatabase(empty, { create: false })).rejects.toMatchObject({
        code: ControllerErrorCode.STATE_DAMAGED,
      });
    });

    it('migrates a database made by an older controller', async () => {
      const older = await dialect.newDatabase({ empty: true });
      const old = await openDatabase(older, { migrations: MIGRATIONS.filter(([name]) => name < '0004') });
      await old.insertInto('hosts').values(host('h-1', 'web-1')).execute();
      await old.destroy();
      const now = await openDatabase(older);
      try {
        expect(await now.selectFrom('fleet_host_status').select(['host_id', 'status']).execute()).toEqual([
          { host_id: 'h-1', status: 'pending' },
        ]);
        expect(await now.selectFrom('hosts').select(['eligible', 'bundle_written_at']).execute()).toEqual([
          { eligible: 1, bundle_written_at: '2024-01-01T00:00:00.000Z' },
        ]);
      } finally {
        await now.destroy();
      }
    });
  });
});

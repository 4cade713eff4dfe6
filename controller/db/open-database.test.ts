import { mkdtemp, open, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Kysely, sql } from 'kysely';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ControllerErrorCode } from '../errors.js';
import { MIGRATIONS } from './migrations.js';
import { openDatabase, openReadConnection } from './open-database.js';
import type { ControllerDatabase } from './schema.js';
import { openSqlite3, Sqlite3Dialect } from './sqlite3-dialect.js';

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'corral-db-'));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

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

describe('controller database', () => {
  it('opens in WAL mode with foreign keys on, and migrating again changes nothing', async () => {
    const path = join(dir, 'corral.db');
    const db = await openDatabase(path);
    const mode = await sql<{ journal_mode: string }>`PRAGMA journal_mode`.execute(db);
    expect(mode.rows[0]?.journal_mode).toBe('wal');
    const fk = await sql<{ foreign_keys: number }>`PRAGMA foreign_keys`.execute(db);
    expect(fk.rows[0]?.foreign_keys).toBe(1);
    await db.insertInto('hosts').values(host('h-1', 'web-1')).execute();
    await db.destroy();
    await db.destroy();

    const again = await openDatabase(path);
    const rows = await again.selectFrom('hosts').select(['id', 'name']).execute();
    expect(rows).toEqual([{ id: 'h-1', name: 'web-1' }]);
    await again.destroy();
  });

  it('keeps names unique only among hosts that are not decommissioned', async () => {
    const db = await openDatabase(join(dir, 'corral.db'));
    await db
      .insertInto('hosts')
      .values(host('h-1', 'web-1', '2024-02-01T00:00:00.000Z'))
      .execute();
    await db.insertInto('hosts').values(host('h-2', 'web-1')).execute();
    await expect(db.insertInto('hosts').values(host('h-3', 'web-1')).execute()).rejects.toThrow(/UNIQUE/);
    await db.destroy();
  });

  it('refuses pins for a host that does not exist', async () => {
    const db = await openDatabase(join(dir, 'corral.db'));
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
    await expect(db.insertInto('pins').values(pin).execute()).rejects.toThrow(/FOREIGN KEY/);
    await db.destroy();
  });

  it('refuses UPDATE and DELETE on the audit table', async () => {
    const db = await openDatabase(join(dir, 'corral.db'));
    await db
      .insertInto('audit')
      .values({
        seq: 1,
        time: 't',
        actor: 'a',
        action: 'x',
        target: 'y',
        details: '{}',
        prev_hash: '0',
        hash: '1',
      })
      .execute();
    await expect(db.updateTable('audit').set({ actor: 'b' }).execute()).rejects.toThrow(/append-only/);
    await expect(db.deleteFrom('audit').execute()).rejects.toThrow(/append-only/);
    await db.destroy();
  });

  it('rolls a transaction back as a whole and serializes concurrent ones', async () => {
    const db = await openDatabase(join(dir, 'corral.db'));
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
            .values(host(`h-${i}`, `n-${Number(n.n)}`))
            .execute();
        }),
      ),
    );
    const names = (await db.selectFrom('hosts').select('name').execute()).map((r) => r.name).sort();
    expect(new Set(names).size).toBe(20);
    await db.destroy();
  });

  it('stops with a clear error when a migration fails, naming it', async () => {
    const broken = [
      ...MIGRATIONS,
      [
        '0999-broken',
        {
          up: async (db: Kysely<unknown>) => {
            await sql`CREATE TABLE hosts (x integer)`.execute(db);
          },
        },
      ] as const,
    ];
    const err = await openDatabase(join(dir, 'corral.db'), { migrations: broken }).catch((e: unknown) => e);
    expect(err).toMatchObject({
      code: ControllerErrorCode.MIGRATION_FAILED,
      message: expect.stringMatching(/0999-broken.*already exists/),
    });
    // The good migrations before it stay applied; the broken one left nothing behind.
    const db = await openDatabase(join(dir, 'corral.db'));
    expect(await db.selectFrom('hosts').selectAll().execute()).toEqual([]);
    await db.destroy();
  });

  it('refuses a database from a newer controller', async () => {
    const db = await openDatabase(join(dir, 'corral.db'), {
      migrations: [...MIGRATIONS, ['0999-future', { up: async () => undefined }]],
    });
    await db.destroy();
    await expect(openDatabase(join(dir, 'corral.db'))).rejects.toMatchObject({
      code: ControllerErrorCode.MIGRATION_FAILED,
    });
  });

  describe('a damaged file', () => {
    /** A database of ~2 MB, then one page of garbage written over its middle. */
    async function withGarbagePage(path: string): Promise<void> {
      const db = await openDatabase(path);
      for (let i = 0; i < 20; i++) {
        await db
          .insertInto('settings')
          .values(Array.from({ length: 100 }, (_, j) => ({ key: `k-${i}-${j}`, value: 'v'.repeat(1000) })))
          .execute();
      }
      await db.destroy();
      const pages = (await stat(path)).size / 4096;
      expect(pages).toBeGreaterThan(400);
      const fh = await open(path, 'r+');
      await fh.write(Buffer.alloc(4096, 0xa5), 0, 4096, Math.floor(pages / 2) * 4096);
      await fh.close();
    }

    it('is refused with CORRAL_ERR_STATE_DAMAGED naming the file, and nothing is created', async () => {
      const path = join(dir, 'corral.db');
      await expect(openDatabase(path, { create: false })).rejects.toMatchObject({
        code: ControllerErrorCode.STATE_DAMAGED,
        file: path,
        message: `${path} is missing`,
      });
      await expect(stat(path)).rejects.toMatchObject({ code: 'ENOENT' });
      await writeFile(path, '');
      await expect(openDatabase(path, { create: false })).rejects.toMatchObject({
        message: `${path} is empty (0 bytes)`,
      });
      await writeFile(path, 'not a database at all, just text');
      await expect(openDatabase(path)).rejects.toMatchObject({
        code: ControllerErrorCode.STATE_DAMAGED,
        message: `${path} is not an SQLite database (its header is wrong)`,
      });
    });

    it('with a page of garbage mid-file fails the integrity check before any migration', async () => {
      const path = join(dir, 'corral.db');
      await withGarbagePage(path);
      const err = await openDatabase(path).catch((e: unknown) => e);
      expect(err).toMatchObject({
        code: ControllerErrorCode.STATE_DAMAGED,
        file: path,
        message: expect.stringContaining(`${path} fails its integrity check`),
      });
    });

    it('an SQLite file that is not the controller database is refused when it must exist', async () => {
      const path = join(dir, 'other.db');
      const raw = await openSqlite3(path);
      await new Promise<void>((res, rej) => raw.exec('CREATE TABLE t (x)', (e) => (e ? rej(e) : res())));
      await new Promise<void>((res) => raw.close(() => res()));
      await expect(openDatabase(path, { create: false })).rejects.toMatchObject({
        code: ControllerErrorCode.STATE_DAMAGED,
        message: expect.stringContaining('holds no controller data'),
      });
    });

    it('met by a query later, names the file instead of a bare SQLITE_CORRUPT', async () => {
      const path = join(dir, 'corral.db');
      await withGarbagePage(path);
      // Opened without the start-up check, as a file damaged while the controller runs.
      const db = new Kysely<ControllerDatabase>({
        dialect: new Sqlite3Dialect(await openSqlite3(path), path),
      });
      const err = await db
        .selectFrom('settings')
        .selectAll()
        .execute()
        .catch((e: unknown) => e);
      await db.destroy();
      expect(err).toMatchObject({ code: ControllerErrorCode.STATE_DAMAGED, file: path });
      expect((err as Error).message.startsWith(`${path}: SQLITE_CORRUPT`)).toBe(true);
    });
  });
  it('a read connection sees every commit, refuses writes, and does not hold up the writer mid-read', async () => {
    const path = join(dir, 'corral.db');
    const db = await openDatabase(path);
    const reader = await openReadConnection(path);
    try {
      await db.insertInto('hosts').values(host('h-1', 'one')).execute();
      expect(await reader.selectFrom('hosts').select('name').execute()).toEqual([{ name: 'one' }]);
      await expect(reader.insertInto('hosts').values(host('h-2', 'two')).execute()).rejects.toThrow(
        /readonly|read-only|query_only/i,
      );
      // A read transaction stays open on the reader while the writer commits (WAL): the
      // writer is not blocked, and the reader keeps its snapshot until it ends.
      await reader.connection().execute(async (c) => {
        await sql`begin`.execute(c);
        expect(await c.selectFrom('hosts').select('id').execute()).toHaveLength(1);
        await db.insertInto('hosts').values(host('h-3', 'three')).execute();
        expect(await c.selectFrom('hosts').select('id').execute()).toHaveLength(1);
        await sql`commit`.execute(c);
      });
      expect(await reader.selectFrom('hosts').select('id').execute()).toHaveLength(2);
    } finally {
      await reader.destroy();
      await db.destroy();
    }
  });

  it('a read connection to a missing file is CORRAL_ERR_DATABASE_OPEN and creates nothing', async () => {
    const path = join(dir, 'absent.db');
    await expect(openReadConnection(path)).rejects.toMatchObject({ code: ControllerErrorCode.DATABASE_OPEN });
    await expect(stat(path)).rejects.toMatchObject({ code: 'ENOENT' });
  });
});

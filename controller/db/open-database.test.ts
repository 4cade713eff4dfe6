import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { sql, type Kysely } from 'kysely';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ControllerErrorCode } from '../errors.js';
import { MIGRATIONS } from './migrations.js';
import { openDatabase } from './open-database.js';

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
});

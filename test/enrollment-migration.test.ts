import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openDatabase } from '../controller/db/open-database.js';
import { MIGRATIONS } from '../controller/db/migrations.js';
import { isReplaceable } from '../controller/fleet/enrollment.js';

/**
 * A database from before enrollment evidence was kept: its hosts get `bundle_written_at` set
 * to their enrollment time, so none of them becomes replaceable by `enroll --replace`.
 */
let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'corral-mig-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('the 0004-enrollment migration', () => {
  it('counts hosts enrolled before it as written, with no join source', async () => {
    const file = join(dir, 'corral.db');
    const before = MIGRATIONS.filter(([name]) => name < '0004');
    const old = await openDatabase(file, { migrations: before });
    await old
      .insertInto('hosts')
      .values({
        id: 'h-old',
        name: 'old-1',
        address: '10.0.0.9',
        agent_port: 8765,
        updater_port: 8766,
        sans: '[]',
        labels: '{}',
        enrolled_at: '2026-01-02T03:04:05.000Z',
        enrolled_via: 'join',
        last_seen: null,
        agent_version: null,
        generation: 0,
        metrics: null,
        decommissioned_at: null,
      })
      .execute();
    await old.destroy();

    const db = await openDatabase(file);
    try {
      const row = await db
        .selectFrom('hosts')
        .selectAll()
        .where('id', '=', 'h-old')
        .executeTakeFirstOrThrow();
      expect(row).toMatchObject({ join_source: null, bundle_written_at: '2026-01-02T03:04:05.000Z' });
      expect(isReplaceable(row)).toBe(false);
    } finally {
      await db.destroy();
    }
  });
});

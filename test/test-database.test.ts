import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { sql } from 'kysely';
import { describe, expect, it } from 'vitest';
import { startController } from './controller-fixture.js';
import { testDatabaseKind } from './test-database.js';

/** The CORRAL_TEST_DATABASE switch: a controller without `database` runs on the run's dialect. */
describe(`startController's default database (${testDatabaseKind})`, () => {
  it('is the dialect this run asked for, one database per controller', async () => {
    await using a = await startController();
    await using b = await startController();
    if (testDatabaseKind === 'sqlite') {
      expect(a.databaseUrl).toBeUndefined();
      return;
    }
    expect(a.databaseUrl).toMatch(/^postgres:\/\//);
    expect(b.databaseUrl).not.toBe(a.databaseUrl);
    const { rows } = await sql<{ v: string }>`SELECT version() AS v`.execute(a.db);
    expect(rows[0]?.v).toMatch(/^PostgreSQL/);
  });

  it('is the same database again for a state dir started again', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'corral-ctl-'));
    try {
      const first = await startController({ dir });
      await first.enroll('web-1');
      await first.close();
      await using again = await startController({ dir });
      expect(again.databaseUrl).toBe(first.databaseUrl);
      const hosts = await again.admin<{ hosts: { name: string }[] }>('GET', '/v1/hosts');
      expect(hosts.body.hosts.map((h) => h.name)).toEqual(['web-1']);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

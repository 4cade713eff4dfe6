import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe } from 'vitest';
import { openDatabase } from '../controller/index.js';
import { postgresSkipReason, startPostgres, type PostgresCluster } from './postgres-fixture.js';

export interface NewDatabaseOptions {
  /**
   * True: nothing in it, not even the controller's tables (for migration tests). Default:
   * on PostgreSQL a copy of a database already migrated once per test file (a copy is much
   * faster than running every migration again); on SQLite an empty file either way.
   */
  readonly empty?: boolean;
}

/**
 * One database dialect a test runs against. `newDatabase()` gives a fresh, empty database
 * as an `openDatabase` target: an SQLite file in a temp dir of its own, or a new database in
 * the test file's private PostgreSQL cluster. Everything is removed after the suite.
 */
export interface TestDialect {
  readonly name: 'sqlite' | 'postgres';
  newDatabase(options?: NewDatabaseOptions): Promise<string>;
  /** A temp dir removed after the suite (for state dirs and such beside the database). */
  tempDir(prefix?: string): Promise<string>;
}

let cluster: Promise<PostgresCluster> | undefined;
let template: Promise<string> | undefined;

/** A database holding the controller's current schema, to copy (no connection may stay open to it). */
async function migratedTemplate(pg: PostgresCluster): Promise<string> {
  template ??= (async () => {
    const url = await pg.createDatabase();
    const db = await openDatabase(url);
    await db.destroy();
    return pg.databaseName(url);
  })();
  return template;
}
let users = 0;

/** The test file's cluster, started on first use and stopped when its last suite ends. */
async function acquireCluster(): Promise<PostgresCluster> {
  users++;
  cluster ??= startPostgres();
  return cluster;
}

async function releaseCluster(): Promise<void> {
  if (--users > 0 || cluster === undefined) return;
  const running = cluster;
  cluster = undefined;
  template = undefined;
  await (await running).stop();
}

function dialect(name: TestDialect['name']): TestDialect {
  const dirs: string[] = [];
  let pg: PostgresCluster | undefined;
  const tempDir = async (prefix = 'corral-db-'): Promise<string> => {
    const dir = await mkdtemp(join(tmpdir(), prefix));
    dirs.push(dir);
    return dir;
  };
  if (name === 'postgres') {
    beforeAll(async () => {
      pg = await acquireCluster();
    });
  }
  afterAll(async () => {
    for (const dir of dirs.splice(0)) await rm(dir, { recursive: true, force: true });
    if (name === 'postgres') await releaseCluster();
  });
  return {
    name,
    tempDir,
    async newDatabase(options = {}) {
      if (name === 'sqlite') return join(await tempDir(), 'corral.db');
      if (!pg) throw new Error('the PostgreSQL cluster is not running');
      return pg.createDatabase(options.empty ? undefined : await migratedTemplate(pg));
    },
  };
}

/**
 * Runs `body` once per dialect, inside `describe('sqlite')` and `describe('postgres')`: SQLite
 * always; PostgreSQL where its binaries are installed, otherwise the suite is skipped and its
 * title says why.
 */
export function describeEachDialect(body: (d: TestDialect) => void): void {
  describe('sqlite', () => body(dialect('sqlite')));
  const skip = postgresSkipReason();
  if (skip !== undefined) {
    describe.skip(`postgres (skipped: ${skip})`, () => body(dialect('postgres')));
    return;
  }
  describe('postgres', () => body(dialect('postgres')));
}

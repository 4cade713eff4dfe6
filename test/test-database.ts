import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { inject } from 'vitest';
import './postgres-global-setup.js';

/**
 * The database dialect the controller suite runs on in this vitest run: `postgres` when
 * CORRAL_TEST_DATABASE=postgres started the shared cluster (postgres-global-setup.ts),
 * else `sqlite`.
 */
export const testDatabaseKind: 'sqlite' | 'postgres' =
  inject('corralSharedPostgres') === undefined ? 'sqlite' : 'postgres';

/** For `it.skipIf`/`describe.skipIf` on a test that only means something on SQLite. */
export const onPostgres = testDatabaseKind === 'postgres';

let admin: pg.Pool | undefined;

function adminPool(adminUrl: string): pg.Pool {
  admin ??= new pg.Pool({
    connectionString: adminUrl,
    max: 1,
    idleTimeoutMillis: 1_000,
    allowExitOnIdle: true,
  });
  return admin;
}

const NAME_RE = /^corral_t_[0-9a-f]{12}$/;

/**
 * A fresh database in the run's shared PostgreSQL cluster, a copy of the migrated template
 * (its URL), or undefined when this run is on SQLite.
 */
export async function newSharedDatabase(): Promise<string | undefined> {
  const shared = inject('corralSharedPostgres');
  if (shared === undefined) return undefined;
  const name = `corral_t_${randomBytes(6).toString('hex')}`;
  if (!/^[a-z0-9_]+$/.test(shared.template)) throw new Error(`bad template ${shared.template}`);
  await adminPool(shared.adminUrl).query(`CREATE DATABASE ${name} TEMPLATE ${shared.template}`);
  const url = new URL(shared.adminUrl);
  url.pathname = `/${name}`;
  return url.toString();
}

/** Drops a database newSharedDatabase made, closing whatever is still connected to it. */
export async function dropSharedDatabase(url: string): Promise<void> {
  const shared = inject('corralSharedPostgres');
  const name = new URL(url).pathname.slice(1);
  if (shared === undefined || !NAME_RE.test(name)) throw new Error(`not a shared test database: ${url}`);
  await adminPool(shared.adminUrl).query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
}

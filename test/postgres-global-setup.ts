import type { TestProject } from 'vitest/node';
import { openDatabase } from '../controller/index.js';
import { postgresSkipReason, startPostgres } from './postgres-fixture.js';

/**
 * What a test worker gets from the cluster one whole vitest run shares (see
 * test-database.ts): its admin URL and the name of a database holding the controller's
 * current schema, to copy with CREATE DATABASE … TEMPLATE.
 */
export interface SharedPostgres {
  readonly adminUrl: string;
  readonly template: string;
}

declare module 'vitest' {
  export interface ProvidedContext {
    /** Set when CORRAL_TEST_DATABASE=postgres; undefined otherwise. */
    corralSharedPostgres: SharedPostgres | undefined;
  }
}

/** Connections for a whole run: two workers, each with a few controllers of ~6 connections open. */
const SHARED_MAX_CONNECTIONS = 300;

/**
 * vitest globalSetup. With CORRAL_TEST_DATABASE=postgres, starts one PostgreSQL cluster for
 * the run, migrates a template database once, and provides both to the workers; the cluster
 * stops when the run ends. Without it, provides nothing and starts nothing. Asking for
 * PostgreSQL where it cannot run fails the run instead of passing on SQLite.
 */
export default async function setup(project: TestProject): Promise<(() => Promise<void>) | undefined> {
  const wanted = process.env.CORRAL_TEST_DATABASE;
  if (wanted === undefined || wanted === '' || wanted === 'sqlite') {
    project.provide('corralSharedPostgres', undefined);
    return undefined;
  }
  if (wanted !== 'postgres') throw new Error(`CORRAL_TEST_DATABASE is sqlite or postgres, not ${wanted}`);
  const skip = postgresSkipReason();
  if (skip !== undefined) {
    throw new Error(
      `CORRAL_TEST_DATABASE=postgres, but ${skip} (CORRAL_TEST_POSTGRES=0 skips npm run test:postgres)`,
    );
  }
  const cluster = await startPostgres({ maxConnections: SHARED_MAX_CONNECTIONS });
  try {
    const url = await cluster.createDatabase();
    const db = await openDatabase(url);
    await db.destroy();
    const template = cluster.databaseName(url);
    project.provide('corralSharedPostgres', {
      adminUrl: `postgres://postgres@127.0.0.1:${cluster.port}/postgres`,
      template,
    });
  } catch (e: unknown) {
    await cluster.stop();
    throw e;
  }
  return () => cluster.stop();
}

import {
  CompiledQuery,
  DeleteQueryNode,
  InsertQueryNode,
  SelectQueryNode,
  SqliteAdapter,
  SqliteIntrospector,
  SqliteQueryCompiler,
  UpdateQueryNode,
  type DatabaseConnection,
  type DatabaseIntrospector,
  type Dialect,
  type DialectAdapter,
  type Driver,
  type Kysely,
  type QueryCompiler,
  type QueryResult,
} from 'kysely';
import sqlite3 from 'sqlite3';
import { ControllerError, ControllerErrorCode } from '../errors.js';

/** Prepared statements kept per connection, by SQL text. */
const STATEMENT_CACHE_SIZE = 128;
const READER_RE = /^\s*(?:select|pragma|with|explain|values)\b/i;
/** Statements never kept prepared: they change the schema or connection state. */
const UNPREPARED_RE = /^\s*(?:create|drop|alter|pragma|vacuum|attach|detach|reindex|analyze)\b/i;

/** Driver errors that mean the file itself is damaged, not the statement. */
const DAMAGE_CODES = new Set(['SQLITE_CORRUPT', 'SQLITE_NOTADB']);

/**
 * The driver's error, or, when it says the file is damaged, CORRAL_ERR_STATE_DAMAGED naming
 * the file (the driver's own message names none).
 */
export function namingFile(err: Error, path: string | undefined): Error {
  const code = (err as { code?: unknown }).code;
  if (path === undefined || typeof code !== 'string' || !DAMAGE_CODES.has(code)) return err;
  return new ControllerError(ControllerErrorCode.STATE_DAMAGED, `${path}: ${err.message}`, {
    cause: err,
    file: path,
  });
}

/**
 * Opens a sqlite3 database file (creating it only when `create`; read-only with
 * `'readonly'`); rejects with the driver's error.
 */
export function openSqlite3(path: string, create: boolean | 'readonly' = true): Promise<sqlite3.Database> {
  const mode =
    create === 'readonly'
      ? sqlite3.OPEN_READONLY
      : sqlite3.OPEN_READWRITE | (create ? sqlite3.OPEN_CREATE : 0);
  return new Promise((resolve, reject) => {
    const db = new sqlite3.Database(path, mode, (err) => {
      if (err) reject(err);
      else resolve(db);
    });
  });
}

function returnsRows(compiled: CompiledQuery): boolean {
  const q = compiled.query;
  if (SelectQueryNode.is(q)) return true;
  if (InsertQueryNode.is(q) || UpdateQueryNode.is(q) || DeleteQueryNode.is(q))
    return q.returning !== undefined;
  return READER_RE.test(compiled.sql);
}

/**
 * One sqlite3 connection as kysely sees it. Statements are prepared once and reused (an LRU
 * by SQL text), which matters on the heartbeat path.
 */
class Sqlite3Connection implements DatabaseConnection {
  readonly #db: sqlite3.Database;
  readonly #path: string | undefined;
  readonly #statements = new Map<string, sqlite3.Statement>();

  constructor(db: sqlite3.Database, path: string | undefined) {
    this.#db = db;
    this.#path = path;
  }

  #statement(sql: string): sqlite3.Statement {
    const cached = this.#statements.get(sql);
    if (cached) {
      this.#statements.delete(sql);
      this.#statements.set(sql, cached);
      return cached;
    }
    const stmt = this.#db.prepare(sql);
    this.#statements.set(sql, stmt);
    if (this.#statements.size > STATEMENT_CACHE_SIZE) {
      const [oldestSql, oldest] = this.#statements.entries().next().value as [string, sqlite3.Statement];
      this.#statements.delete(oldestSql);
      oldest.finalize();
    }
    return stmt;
  }

  executeQuery<R>(compiled: CompiledQuery): Promise<QueryResult<R>> {
    const params = [...compiled.parameters];
    const reusable = !UNPREPARED_RE.test(compiled.sql);
    return new Promise((resolve, reject) => {
      if (returnsRows(compiled)) {
        const done = (err: Error | null, rows: R[]): void =>
          err ? reject(namingFile(err, this.#path)) : resolve({ rows });
        if (reusable) this.#statement(compiled.sql).all<R>(params, done);
        else this.#db.all<R>(compiled.sql, params, done);
        return;
      }
      const path = this.#path;
      const done = function (this: sqlite3.RunResult, err: Error | null): void {
        if (err) {
          reject(namingFile(err, path));
          return;
        }
        resolve({
          rows: [],
          numAffectedRows: BigInt(this.changes ?? 0),
          ...(this.lastID === undefined ? {} : { insertId: BigInt(this.lastID) }),
        });
      };
      if (reusable) this.#statement(compiled.sql).run(params, done);
      else this.#db.run(compiled.sql, params, done);
    });
  }

  // eslint-disable-next-line require-yield
  async *streamQuery<R>(): AsyncIterableIterator<QueryResult<R>> {
    throw new ControllerError(
      ControllerErrorCode.UNSUPPORTED,
      'streaming is not supported by the sqlite3 driver',
    );
  }

  finalizeAll(): void {
    for (const stmt of this.#statements.values()) stmt.finalize();
    this.#statements.clear();
  }
}

/**
 * A kysely Driver over the `sqlite3` package: one connection, and a FIFO lock so a
 * transaction owns it from `begin` to `commit` (SQLite has one writer anyway).
 */
class Sqlite3Driver implements Driver {
  readonly #db: sqlite3.Database;
  readonly #connection: Sqlite3Connection;
  #locked = false;
  readonly #waiters: (() => void)[] = [];
  #destroyed = false;

  constructor(db: sqlite3.Database, path: string | undefined) {
    this.#db = db;
    this.#connection = new Sqlite3Connection(db, path);
  }

  async init(): Promise<void> {}

  async acquireConnection(): Promise<DatabaseConnection> {
    if (this.#locked) await new Promise<void>((resolve) => this.#waiters.push(resolve));
    this.#locked = true;
    return this.#connection;
  }

  async releaseConnection(): Promise<void> {
    const next = this.#waiters.shift();
    if (next) next();
    else this.#locked = false;
  }

  async beginTransaction(connection: DatabaseConnection): Promise<void> {
    await connection.executeQuery(CompiledQuery.raw('begin immediate'));
  }

  async commitTransaction(connection: DatabaseConnection): Promise<void> {
    await connection.executeQuery(CompiledQuery.raw('commit'));
  }

  async rollbackTransaction(connection: DatabaseConnection): Promise<void> {
    await connection.executeQuery(CompiledQuery.raw('rollback'));
  }

  async destroy(): Promise<void> {
    if (this.#destroyed) return;
    this.#destroyed = true;
    this.#connection.finalizeAll();
    await new Promise<void>((resolve, reject) => this.#db.close((err) => (err ? reject(err) : resolve())));
  }
}

/**
 * Kysely dialect for an already-open sqlite3 database (SQLite SQL, sqlite3 transport). With
 * `path`, errors that mean the file is damaged name it (see namingFile).
 */
export class Sqlite3Dialect implements Dialect {
  readonly #db: sqlite3.Database;
  readonly #path: string | undefined;

  constructor(db: sqlite3.Database, path?: string) {
    this.#db = db;
    this.#path = path;
  }

  createDriver(): Driver {
    return new Sqlite3Driver(this.#db, this.#path);
  }

  createQueryCompiler(): QueryCompiler {
    return new SqliteQueryCompiler();
  }

  createAdapter(): DialectAdapter {
    return new SqliteAdapter();
  }

  createIntrospector(db: Kysely<unknown>): DatabaseIntrospector {
    return new SqliteIntrospector(db);
  }
}

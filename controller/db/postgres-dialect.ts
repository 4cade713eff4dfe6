import {
  DataTypeNode,
  OperationNodeTransformer,
  PostgresDialect,
  type KyselyPlugin,
  type PluginTransformQueryArgs,
  type PluginTransformResultArgs,
  type QueryResult,
  type RootOperationNode,
  type UnknownRow,
} from 'kysely';
import pg from 'pg';

/** Type OIDs whose text the controller reads as numbers (see TYPE_PARSERS). */
const OID_BOOL = 16;
const OID_INT8 = 20;
const OID_NUMERIC = 1700;

/**
 * What the code above the seam sees is what SQLite's driver hands it: 64-bit integers
 * (`count(*)`, `bigint` columns) and numerics as JS numbers rather than strings, and a
 * boolean expression as 1 or 0 (SQLite has no boolean type; flag columns are integers on
 * both dialects).
 */
const TYPE_PARSERS: Readonly<Record<number, (text: string) => unknown>> = {
  [OID_BOOL]: (text) => (text === 't' ? 1 : 0),
  [OID_INT8]: (text) => Number(text),
  [OID_NUMERIC]: (text) => Number(text),
};

/** pg's own parser of `oid`'s text form (the driver asks for text results only). */
function defaultParser(oid: number): (text: string) => unknown {
  return pg.types.getTypeParser(oid, 'text') as (text: string) => unknown;
}

const types = {
  getTypeParser: ((oid: number) => TYPE_PARSERS[oid] ?? defaultParser(oid)) as typeof pg.types.getTypeParser,
};

/**
 * SQLite's `integer` is 64-bit; PostgreSQL's is 32-bit. In DDL on PostgreSQL every
 * `integer` column becomes `bigint`, so the same migrations hold the same values on both.
 */
class WideIntegers extends OperationNodeTransformer {
  protected override transformDataType(node: DataTypeNode): DataTypeNode {
    return node.dataType === 'integer' ? DataTypeNode.create('bigint') : node;
  }
}

export class WideIntegersPlugin implements KyselyPlugin {
  readonly #transformer = new WideIntegers();

  transformQuery(args: PluginTransformQueryArgs): RootOperationNode {
    return this.#transformer.transformNode(args.node);
  }

  async transformResult(args: PluginTransformResultArgs): Promise<QueryResult<UnknownRow>> {
    return args.result;
  }
}

export interface PostgresPoolOptions {
  /** Connections the pool may hold. */
  readonly max: number;
  /** Every transaction read-only (`default_transaction_read_only`). */
  readonly readOnly?: boolean;
  /** For the server's `application_name`. */
  readonly name: string;
}

/** Connection attempts give up after this long, in ms. */
export const PG_CONNECT_TIMEOUT_MS = 10_000;

/**
 * A pg pool for `url` with the controller's type parsers. An idle connection the server ends
 * (a restart or failover, pg_terminate_backend) is an 'error' event on the pool, which
 * without a listener would end the process: the pool has already dropped that connection and
 * the next query connects anew, so the listener only has to be there. A query on a connection
 * that dies fails that query, as before.
 */
export function createPostgresPool(url: string, o: PostgresPoolOptions): pg.Pool {
  const pool = new pg.Pool({
    connectionString: url,
    max: o.max,
    types,
    connectionTimeoutMillis: PG_CONNECT_TIMEOUT_MS,
    application_name: o.name,
    ...(o.readOnly && { options: '-c default_transaction_read_only=on' }),
  });
  pool.on('error', () => undefined /* an idle connection ended; the pool removed it (see above) */);
  // The same for a connection ending while checked out between queries: its next query fails,
  // and the pool discards it when it is released.
  pool.on('connect', (client) => {
    client.on('error', () => undefined /* a checked-out connection ended (see above) */);
  });
  return pool;
}

/** Kysely's PostgreSQL dialect over a pool made by createPostgresPool. */
export function postgresDialect(pool: pg.Pool): PostgresDialect {
  return new PostgresDialect({ pool });
}

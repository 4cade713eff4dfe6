import { isAbsolute, resolve } from 'node:path';
import { ControllerError, ControllerErrorCode } from '../errors.js';

/**
 * Where the controller's database lives: an SQLite file (the embedded default, `corral.db`
 * in the state dir) or a PostgreSQL database named by a connection URL.
 */
export type DatabaseTarget =
  { readonly kind: 'sqlite'; readonly path: string } | { readonly kind: 'postgres'; readonly url: string };

export type DatabaseKind = DatabaseTarget['kind'];

const POSTGRES_RE = /^postgres(?:ql)?:\/\//i;
const SQLITE_PREFIX = 'sqlite:';

/**
 * `sqlite:PATH` (relative paths are taken from the working directory) or
 * `postgres://…` / `postgresql://…`. Throws CORRAL_ERR_DATABASE_TARGET for anything else, and for a
 * PostgreSQL URL that does not parse.
 */
export function parseDatabaseTarget(text: string): DatabaseTarget {
  if (POSTGRES_RE.test(text)) {
    try {
      new URL(text);
    } catch (e: unknown) {
      throw new ControllerError(
        ControllerErrorCode.DATABASE_TARGET,
        '--database: the PostgreSQL URL does not parse',
        {
          cause: e,
        },
      );
    }
    return { kind: 'postgres', url: text };
  }
  if (text.startsWith(SQLITE_PREFIX) && text.length > SQLITE_PREFIX.length) {
    const path = text.slice(SQLITE_PREFIX.length);
    return { kind: 'sqlite', path: isAbsolute(path) ? path : resolve(path) };
  }
  throw new ControllerError(
    ControllerErrorCode.DATABASE_TARGET,
    '--database takes sqlite:PATH or postgres://USER@HOST:PORT/NAME',
  );
}

/**
 * A target, or a bare string: a `sqlite:`/`postgres://` target as parseDatabaseTarget reads
 * it, any other string the path of an SQLite file.
 */
export function toDatabaseTarget(target: DatabaseTarget | string): DatabaseTarget {
  if (typeof target !== 'string') return target;
  if (POSTGRES_RE.test(target) || target.startsWith(SQLITE_PREFIX)) return parseDatabaseTarget(target);
  return { kind: 'sqlite', path: target };
}

/** For messages and logs: the file, or the URL without its password. */
export function describeDatabaseTarget(target: DatabaseTarget): string {
  if (target.kind === 'sqlite') return target.path;
  const url = new URL(target.url);
  if (url.password) url.password = '***';
  url.searchParams.delete('password');
  return url.toString();
}

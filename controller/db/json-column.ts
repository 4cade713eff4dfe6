import { Type, type Static, type TSchema } from '@sinclair/typebox';
import { TypeCompiler, type TypeCheck } from '@sinclair/typebox/compiler';
import { ControllerError, ControllerErrorCode } from '../errors.js';
// Registers the date-time format that the column schemas use.
import '../../protocol/validate.js';

/** The JSON column a value was read from, for the error that names it. */
export interface ColumnAt {
  readonly table: string;
  readonly column: string;
  /** The row's key (id, or `key` of a setting). */
  readonly row: string | number;
}

/** A list of host names and addresses (certificate SANs, advertised addresses). */
export const StoredNames = Type.Array(Type.String({ minLength: 1, maxLength: 253 }), { maxItems: 1024 });
/** Free-form details of an audit entry (an object; its values are whatever the action recorded). */
export const StoredDetails = Type.Record(Type.String(), Type.Unknown());

/** Compiled checkers, one per schema object (schemas are module constants, so this stays small). */
const checkers = new WeakMap<TSchema, TypeCheck<TSchema>>();

function checkerOf<T extends TSchema>(schema: T): TypeCheck<T> {
  let check = checkers.get(schema);
  if (!check) {
    check = TypeCompiler.Compile(schema);
    checkers.set(schema, check);
  }
  return check as TypeCheck<T>;
}

/**
 * Decodes a JSON column with its schema, the database being an input like any other. Throws
 * CORRAL_ERR_ROW_DAMAGED naming the table, row and column (and the first offending field)
 * when the text is not JSON or does not match: the row holds something Corral did not write.
 */
export function decodeJsonColumn<T extends TSchema>(schema: T, text: string, at: ColumnAt): Static<T> {
  // Named only when refused: a host list page decodes two columns of 500 rows.
  const where = (): string => `${at.table} row ${JSON.stringify(at.row)}, column ${at.column}`;
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (e: unknown) {
    throw new ControllerError(ControllerErrorCode.ROW_DAMAGED, `${where()}: not valid JSON`, { cause: e });
  }
  const check = checkerOf(schema);
  if (check.Check(value)) return value;
  const first = check.Errors(value).First();
  const path = first ? (first.path === '' ? '/' : first.path) : '/';
  throw new ControllerError(
    ControllerErrorCode.ROW_DAMAGED,
    `${where()}: ${path}: ${first?.message ?? 'does not match its schema'}`,
  );
}

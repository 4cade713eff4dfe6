import { Type } from '@sinclair/typebox';
import { open } from 'node:fs/promises';
import { writeFileAtomic, PRIVATE_FILE_MODE } from '../pki/fs-secure.js';
import { parseJsonWith } from '../protocol/validate.js';
import { ForwarderError, ForwarderErrorCode } from './errors.js';

/**
 * `<positions file>.marker`: written (durably) when a positions database is created, before
 * anything is shipped, and kept beside it from then on. It names the database by a random id
 * that the database also holds, so a database that is missing, empty, damaged or another one
 * is told apart from a first start: the forwarder never silently starts afresh after it has
 * shipped.
 */
const Marker = Type.Object(
  {
    version: Type.Literal(1),
    storeId: Type.String({ pattern: '^[0-9a-f]{32}$' }),
  },
  { additionalProperties: false },
);

const MAX_MARKER_BYTES = 4096;

export type MarkerState =
  | { readonly state: 'absent' }
  | { readonly state: 'ok'; readonly storeId: string }
  /** Present but unreadable: it still says this forwarder has shipped before. */
  | { readonly state: 'damaged'; readonly detail: string };

export const markerPath = (positionsFile: string): string => `${positionsFile}.marker`;

export async function readMarker(path: string): Promise<MarkerState> {
  let text: string;
  try {
    const fh = await open(path, 'r');
    try {
      const buf = Buffer.alloc(MAX_MARKER_BYTES + 1);
      const { bytesRead } = await fh.read(buf, 0, buf.length, 0);
      text = buf.toString('utf8', 0, bytesRead);
    } finally {
      await fh.close();
    }
  } catch (e: unknown) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return { state: 'absent' };
    throw new ForwarderError(
      ForwarderErrorCode.POSITIONS_DAMAGED,
      `cannot read ${path}: ${e instanceof Error ? e.message : String(e)}`,
      { cause: e },
    );
  }
  try {
    return { state: 'ok', storeId: parseJsonWith(Marker, text, path, MAX_MARKER_BYTES).storeId };
  } catch (e: unknown) {
    return { state: 'damaged', detail: e instanceof Error ? e.message : String(e) };
  }
}

export async function writeMarker(path: string, storeId: string): Promise<void> {
  try {
    await writeFileAtomic(path, `${JSON.stringify({ version: 1, storeId })}\n`, PRIVATE_FILE_MODE);
  } catch (e: unknown) {
    throw new ForwarderError(
      ForwarderErrorCode.POSITIONS_DAMAGED,
      `cannot write ${path}: ${e instanceof Error ? e.message : String(e)}`,
      { cause: e },
    );
  }
}

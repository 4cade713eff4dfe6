/**
 * Corral's exactly-once log session, spoken over octet-counted frames (syslog-frame.ts) on a
 * mutual-TLS connection from a worker's forwarder to the controller's syslog listener.
 *
 * Streams. A forwarder ships files; each *generation* of a file (one inode with one first
 * line: a rotation or a truncation starts a new generation) is a stream with a random 128-bit
 * id the forwarder keeps in its position database. A position is a byte offset in that
 * generation; the position after a line counts its terminating LF.
 *
 * Session (forwarder → listener frames start with `@corral/1 `; so do the listener's answers):
 *
 *   open  <slot> <streamId> [<key>]       bind slot 0..MAX_SESSION_STREAMS-1 to a stream;
 *                                         `key` names the generation by its content (below)
 *     ← at  <slot> <position>             the position the listener has durably written
 *   batch <slot> <start> <end> <count>    the next `count` frames are the stream's lines
 *     <count frames>                      each one file line without its LF, consecutive,
 *                                         starting at `start`; line i ends at the previous
 *                                         end + its length + 1, and the last line ends at
 *                                         `end` (a line too long for a frame travels in
 *                                         pieces, one batch each, so only the last counts
 *                                         the LF)
 *     ← ack <slot> <position>             sent only after the lines are written and fsynced
 *   find  <slot> <key>                    which stream of this host has that key?
 *     ← known   <slot> <key> <streamId> <position>   exactly one (position durably written)
 *     ← unknown <slot> <key>                           none, or more than one
 *   lost  <slot> <streamId> <bytes>       a generation of the slot's file vanished before it
 *                                         was read (`bytes` unread, as far as the forwarder
 *                                         knows; 0 when it cannot tell); no answer
 *
 * A *key* is the first 32 hex digits of SHA-256("corral-stream-key/1" NUL path NUL headHash),
 * where path is the file's absolute path on the worker and headHash the lowercase hex SHA-256
 * of the generation's first line (see forwarder/file-identity.ts). The listener keeps each
 * stream's key with its position, so a forwarder that has lost its position database can find
 * its streams again (`find`) and resume each where the listener has got to instead of
 * shipping the files again. Keys are only looked up, never trusted for deduplication: two
 * generations with the same path and first line make a key ambiguous, and `find` then
 * answers `unknown`. A `slot` in `find` and `lost` only says which file it is about.
 *
 * The listener keeps, per host and stream, the highest position it has durably written, in
 * the same commit as the lines (a journal shared by all hosts, or the host's own state file;
 * see syslog-state.ts). The commit also records the ingest file's committed length, and on
 * start the listener truncates anything beyond it, so the log and the positions can never
 * disagree. Every line of a batch that ends at or
 * below the stream's position is dropped as already written. The forwarder resumes each
 * stream at max(its own acked position, the listener's `at`), and advances its stored
 * position only on `ack`. Hence a kill -9 of either side, a listener restart or a network
 * cut loses nothing (unacked lines are read again from the file) and duplicates nothing (the
 * listener drops what it already has). A second `open` of a stream closes the connection
 * that had it before, so two connections never interleave one stream.
 *
 * A connection whose first frame is not a Corral control frame is a standard RFC 5425
 * sender: each frame is one message, ingested as it comes, with no acknowledgement
 * (at-least-once at best, as the RFC allows).
 */

import { encodeFrame } from './syslog-frame.js';
import { CorralError, ErrorCode } from './errors.js';

export const CORRAL_SYSLOG_PREFIX = '@corral/1 ';
const PREFIX_BYTES = Buffer.from(CORRAL_SYSLOG_PREFIX, 'latin1');

/** Streams one session may have open at once. */
export const MAX_SESSION_STREAMS = 64;
/** Lines one batch may carry. */
export const MAX_BATCH_LINES = 65_536;
/** Line bytes one batch may carry. */
export const MAX_BATCH_BYTES = 4 * 1024 * 1024;
/** Largest control frame, in bytes; they are short ASCII records. */
export const MAX_CONTROL_FRAME_BYTES = 200;

export const STREAM_ID_RE = /^[0-9a-f]{32}$/;
/** A generation's content key (see above): 32 lowercase hex digits. */
export const STREAM_KEY_RE = /^[0-9a-f]{32}$/;
export const STREAM_KEY_DOMAIN = 'corral-stream-key/1';

export type CorralControl =
  | { readonly kind: 'open'; readonly slot: number; readonly streamId: string; readonly key?: string }
  | {
      readonly kind: 'batch';
      readonly slot: number;
      readonly start: number;
      readonly end: number;
      readonly count: number;
    }
  | { readonly kind: 'at'; readonly slot: number; readonly position: number }
  | { readonly kind: 'ack'; readonly slot: number; readonly position: number }
  | { readonly kind: 'find'; readonly slot: number; readonly key: string }
  | {
      readonly kind: 'known';
      readonly slot: number;
      readonly key: string;
      readonly streamId: string;
      readonly position: number;
    }
  | { readonly kind: 'unknown'; readonly slot: number; readonly key: string }
  | { readonly kind: 'lost'; readonly slot: number; readonly streamId: string; readonly bytes: number }
  /**
   * Listener to forwarder, then the listener closes: this host is decommissioned. Sent only on
   * a connection presenting the host's own last-pinned certificate; the forwarder exits.
   */
  | { readonly kind: 'decommissioned' };

/** A peer broke the `@corral/1` control protocol (CORRAL_ERR_SYSLOG_PROTOCOL). */
export class CorralProtocolError extends CorralError<typeof ErrorCode.SYSLOG_PROTOCOL> {
  override readonly name: string = 'CorralProtocolError';

  constructor(message: string) {
    super(ErrorCode.SYSLOG_PROTOCOL, message);
  }
}

/** True when the message at `buf[start, end)` is a Corral control frame. */
export function isCorralControl(buf: Buffer, start: number, end: number): boolean {
  if (end - start < PREFIX_BYTES.length) return false;
  return buf.compare(PREFIX_BYTES, 0, PREFIX_BYTES.length, start, start + PREFIX_BYTES.length) === 0;
}

const INT = '(0|[1-9][0-9]{0,15})';
const HEX32 = '([0-9a-f]{32})';
const CONTROL_RE = new RegExp(
  `^@corral/1 (?:(open) ${INT} ${HEX32}(?: ${HEX32})?|(batch) ${INT} ${INT} ${INT} ${INT}|(at|ack) ${INT} ${INT}` +
    `|(find) ${INT} ${HEX32}|(known) ${INT} ${HEX32} ${HEX32} ${INT}|(unknown) ${INT} ${HEX32}` +
    `|(lost) ${INT} ${HEX32} ${INT}|(decommissioned))$`,
);

function safeInt(text: string | undefined, what: string): number {
  const n = Number(text);
  if (!Number.isSafeInteger(n)) throw new CorralProtocolError(`${what} is out of range`);
  return n;
}

function slotOf(text: string | undefined): number {
  const slot = safeInt(text, 'slot');
  if (slot >= MAX_SESSION_STREAMS) throw new CorralProtocolError(`slot ${slot} is out of range`);
  return slot;
}

/** Parses a control frame; throws CorralProtocolError on anything but the grammar above. */
export function parseCorralControl(buf: Buffer, start: number, end: number): CorralControl {
  if (end - start > MAX_CONTROL_FRAME_BYTES) throw new CorralProtocolError('control frame is too long');
  const m = CONTROL_RE.exec(buf.toString('latin1', start, end));
  if (!m) throw new CorralProtocolError('malformed control frame');
  if (m[1] === 'open') {
    const open = { kind: 'open', slot: slotOf(m[2]), streamId: m[3] ?? '' } as const;
    return m[4] === undefined ? open : { ...open, key: m[4] };
  }
  if (m[5] === 'batch') {
    const batch = {
      kind: 'batch',
      slot: slotOf(m[6]),
      start: safeInt(m[7], 'start'),
      end: safeInt(m[8], 'end'),
      count: safeInt(m[9], 'count'),
    } as const;
    if (batch.count < 1 || batch.count > MAX_BATCH_LINES) {
      throw new CorralProtocolError(`batch of ${batch.count} lines is out of range`);
    }
    if (batch.end <= batch.start || batch.end - batch.start > MAX_BATCH_BYTES + batch.count) {
      throw new CorralProtocolError('batch range is invalid');
    }
    return batch;
  }
  if (m[10] !== undefined) {
    return { kind: m[10] === 'at' ? 'at' : 'ack', slot: slotOf(m[11]), position: safeInt(m[12], 'position') };
  }
  if (m[13] === 'find') return { kind: 'find', slot: slotOf(m[14]), key: m[15] ?? '' };
  if (m[16] === 'known') {
    return {
      kind: 'known',
      slot: slotOf(m[17]),
      key: m[18] ?? '',
      streamId: m[19] ?? '',
      position: safeInt(m[20], 'position'),
    };
  }
  if (m[21] === 'unknown') return { kind: 'unknown', slot: slotOf(m[22]), key: m[23] ?? '' };
  if (m[28] === 'decommissioned') return { kind: 'decommissioned' };
  return { kind: 'lost', slot: slotOf(m[25]), streamId: m[26] ?? '', bytes: safeInt(m[27], 'bytes') };
}

/** The message text of a control frame. */
export function formatCorralControl(msg: CorralControl): string {
  switch (msg.kind) {
    case 'open':
      return `${CORRAL_SYSLOG_PREFIX}open ${msg.slot} ${msg.streamId}${msg.key === undefined ? '' : ` ${msg.key}`}`;
    case 'batch':
      return `${CORRAL_SYSLOG_PREFIX}batch ${msg.slot} ${msg.start} ${msg.end} ${msg.count}`;
    case 'at':
    case 'ack':
      return `${CORRAL_SYSLOG_PREFIX}${msg.kind} ${msg.slot} ${msg.position}`;
    case 'find':
    case 'unknown':
      return `${CORRAL_SYSLOG_PREFIX}${msg.kind} ${msg.slot} ${msg.key}`;
    case 'known':
      return `${CORRAL_SYSLOG_PREFIX}known ${msg.slot} ${msg.key} ${msg.streamId} ${msg.position}`;
    case 'lost':
      return `${CORRAL_SYSLOG_PREFIX}lost ${msg.slot} ${msg.streamId} ${msg.bytes}`;
    case 'decommissioned':
      return `${CORRAL_SYSLOG_PREFIX}decommissioned`;
  }
}

/** A control message as a ready-to-send frame. */
export function encodeCorralControlFrame(msg: CorralControl): Buffer {
  return encodeFrame(formatCorralControl(msg));
}

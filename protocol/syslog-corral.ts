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
 *   open  <slot> <streamId>               bind slot 0..MAX_SESSION_STREAMS-1 to a stream
 *     ← at  <slot> <position>             the position the listener has durably written
 *   batch <slot> <start> <end> <count>    the next `count` frames are the stream's lines
 *     <count frames>                      each one file line without its LF, consecutive,
 *                                         starting at `start`; line i ends at the previous
 *                                         end + its length + 1, and the last line ends at
 *                                         `end` (a line too long for a frame travels in
 *                                         pieces, one batch each, so only the last counts
 *                                         the LF)
 *     ← ack <slot> <position>             sent only after the lines are written and fsynced
 *
 * The listener keeps, per host and stream, the highest position it has durably written, in a
 * state file it replaces atomically after fsyncing the ingest file. That state also records
 * the ingest file's committed length, and on start the listener truncates anything beyond it,
 * so the log and the positions can never disagree. Every line of a batch that ends at or
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

export type CorralControl =
  | { readonly kind: 'open'; readonly slot: number; readonly streamId: string }
  | {
      readonly kind: 'batch';
      readonly slot: number;
      readonly start: number;
      readonly end: number;
      readonly count: number;
    }
  | { readonly kind: 'at'; readonly slot: number; readonly position: number }
  | { readonly kind: 'ack'; readonly slot: number; readonly position: number };

export class CorralProtocolError extends Error {
  override readonly name = 'CorralProtocolError';
}

/** True when the message at `buf[start, end)` is a Corral control frame. */
export function isCorralControl(buf: Buffer, start: number, end: number): boolean {
  if (end - start < PREFIX_BYTES.length) return false;
  return buf.compare(PREFIX_BYTES, 0, PREFIX_BYTES.length, start, start + PREFIX_BYTES.length) === 0;
}

const INT = '(0|[1-9][0-9]{0,15})';
const CONTROL_RE = new RegExp(
  `^@corral/1 (?:(open) ${INT} ([0-9a-f]{32})|(batch) ${INT} ${INT} ${INT} ${INT}|(at|ack) ${INT} ${INT})$`,
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
  if (m[1] === 'open') return { kind: 'open', slot: slotOf(m[2]), streamId: m[3] ?? '' };
  if (m[4] === 'batch') {
    const batch = {
      kind: 'batch',
      slot: slotOf(m[5]),
      start: safeInt(m[6], 'start'),
      end: safeInt(m[7], 'end'),
      count: safeInt(m[8], 'count'),
    } as const;
    if (batch.count < 1 || batch.count > MAX_BATCH_LINES) {
      throw new CorralProtocolError(`batch of ${batch.count} lines is out of range`);
    }
    if (batch.end <= batch.start || batch.end - batch.start > MAX_BATCH_BYTES + batch.count) {
      throw new CorralProtocolError('batch range is invalid');
    }
    return batch;
  }
  const kind = m[9] === 'at' ? 'at' : 'ack';
  return { kind, slot: slotOf(m[10]), position: safeInt(m[11], 'position') };
}

/** The message text of a control frame. */
export function formatCorralControl(msg: CorralControl): string {
  switch (msg.kind) {
    case 'open':
      return `${CORRAL_SYSLOG_PREFIX}open ${msg.slot} ${msg.streamId}`;
    case 'batch':
      return `${CORRAL_SYSLOG_PREFIX}batch ${msg.slot} ${msg.start} ${msg.end} ${msg.count}`;
    case 'at':
    case 'ack':
      return `${CORRAL_SYSLOG_PREFIX}${msg.kind} ${msg.slot} ${msg.position}`;
  }
}

/** A control message as a ready-to-send frame. */
export function encodeCorralControlFrame(msg: CorralControl): Buffer {
  return encodeFrame(formatCorralControl(msg));
}

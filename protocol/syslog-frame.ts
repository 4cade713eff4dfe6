/**
 * Octet-counted syslog framing (RFC 6587 §3.4.1, as RFC 5425 uses it over TLS):
 * `MSG-LEN SP SYSLOG-MSG`, where MSG-LEN is a decimal count of the message's octets with no
 * leading zero. Both directions of Corral's log protocol use it (see syslog-corral.ts).
 */

import { CorralError, ErrorCode } from './errors.js';

/** Largest message a frame may carry by default, in bytes. */
export const DEFAULT_SYSLOG_MAX_FRAME_BYTES = 64 * 1024;
/** MSG-LEN digits we accept before calling the prefix malformed (2^32 has 10). */
export const MAX_MSG_LEN_DIGITS = 10;

const SP = 0x20;
const DIGIT_0 = 0x30;
const DIGIT_1 = 0x31;
const DIGIT_9 = 0x39;

/**
 * Why a byte stream stopped being a valid sequence of frames: CORRAL_ERR_SYSLOG_FRAME for a
 * malformed length prefix, CORRAL_ERR_PAYLOAD_TOO_LARGE for a frame over the cap.
 */
export class FrameError extends CorralError<
  typeof ErrorCode.SYSLOG_FRAME | typeof ErrorCode.PAYLOAD_TOO_LARGE
> {
  override readonly name: string = 'FrameError';
}

/**
 * Called once per complete frame with the message's bytes at `buf[start, end)`. The buffer is
 * only valid during the call: copy what you keep.
 */
export type FrameHandler = (buf: Buffer, start: number, end: number) => void;

/**
 * Incremental parser for a stream of octet-counted frames. Frames inside a chunk are handed
 * out in place; only a frame that spans chunks is copied (into a buffer of exactly its size,
 * at most `maxFrameBytes`). Throws FrameError on a malformed or oversized length prefix as
 * soon as it is seen, before any of that frame's data is buffered.
 */
export class FrameParser {
  private readonly maxFrameBytes: number;
  /** Digits of a length prefix cut by the end of a chunk. */
  private readonly digits = Buffer.alloc(MAX_MSG_LEN_DIGITS);
  private digitCount = 0;
  /** The message of a frame cut by the end of a chunk, and how much of it has arrived. */
  private partial: Buffer | undefined;
  private partialFilled = 0;

  constructor(maxFrameBytes = DEFAULT_SYSLOG_MAX_FRAME_BYTES) {
    this.maxFrameBytes = maxFrameBytes;
  }

  /** Bytes of an incomplete frame held; non-zero at end of stream means a half-sent frame. */
  get bufferedBytes(): number {
    return this.digitCount + (this.partial ? this.partialFilled + 1 : 0);
  }

  push(chunk: Buffer, onFrame: FrameHandler): void {
    const len = chunk.length;
    let pos = 0;
    if (this.digitCount > 0) {
      pos = this.finishPrefix(chunk);
      if (pos < 0) return;
    }
    if (this.partial) {
      const partial = this.partial;
      const take = Math.min(partial.length - this.partialFilled, len - pos);
      chunk.copy(partial, this.partialFilled, pos, pos + take);
      this.partialFilled += take;
      pos += take;
      if (this.partialFilled < partial.length) return;
      this.partial = undefined;
      this.partialFilled = 0;
      onFrame(partial, 0, partial.length);
    }
    while (pos < len) {
      const first = chunk[pos] ?? 0;
      if (first < DIGIT_1 || first > DIGIT_9) {
        throw new FrameError(ErrorCode.SYSLOG_FRAME, 'frame does not start with a length');
      }
      let n = first - DIGIT_0;
      let i = pos + 1;
      while (i < len && chunk[i] !== SP) {
        n = this.addDigit(n, chunk[i] ?? 0, i - pos);
        i++;
      }
      if (n > this.maxFrameBytes) {
        throw new FrameError(ErrorCode.PAYLOAD_TOO_LARGE, `frame is larger than ${this.maxFrameBytes} bytes`);
      }
      if (i === len) {
        chunk.copy(this.digits, 0, pos, len);
        this.digitCount = len - pos;
        return;
      }
      const start = i + 1;
      const end = start + n;
      if (end > len) {
        this.startPartial(n, chunk, start, len);
        return;
      }
      onFrame(chunk, start, end);
      pos = end;
    }
  }

  /** Adds the digit `c` (the `index`th of its prefix) to `n`; throws if that breaks a rule. */
  private addDigit(n: number, c: number, index: number): number {
    if (c < DIGIT_0 || c > DIGIT_9 || index >= MAX_MSG_LEN_DIGITS) {
      throw new FrameError(ErrorCode.SYSLOG_FRAME, 'frame length is not a decimal number');
    }
    const next = n * 10 + (c - DIGIT_0);
    if (next > this.maxFrameBytes) {
      throw new FrameError(ErrorCode.PAYLOAD_TOO_LARGE, `frame is larger than ${this.maxFrameBytes} bytes`);
    }
    return next;
  }

  /** Completes a prefix cut by the last chunk; returns where its message starts, or -1. */
  private finishPrefix(chunk: Buffer): number {
    let n = 0;
    for (let i = 0; i < this.digitCount; i++) n = n * 10 + ((this.digits[i] ?? 0) - DIGIT_0);
    let pos = 0;
    while (pos < chunk.length && chunk[pos] !== SP) {
      n = this.addDigit(n, chunk[pos] ?? 0, this.digitCount);
      this.digits[this.digitCount++] = chunk[pos] ?? 0;
      pos++;
    }
    if (pos === chunk.length) return -1;
    this.digitCount = 0;
    this.startPartial(n, chunk, pos + 1, pos + 1);
    return pos + 1;
  }

  private startPartial(n: number, chunk: Buffer, from: number, to: number): void {
    this.partial = Buffer.allocUnsafe(n);
    this.partialFilled = chunk.copy(this.partial, 0, from, to);
  }
}

/** Number of decimal digits of a non-negative integer. */
export function decimalDigits(n: number): number {
  let digits = 1;
  while (n >= 10) {
    n = Math.floor(n / 10);
    digits++;
  }
  return digits;
}

/** Writes `n` in decimal at `out[offset]`; returns the offset after it. */
export function writeDecimal(out: Buffer, offset: number, n: number): number {
  const digits = decimalDigits(n);
  let i = offset + digits - 1;
  do {
    out[i--] = DIGIT_0 + (n % 10);
    n = Math.floor(n / 10);
  } while (n > 0);
  return offset + digits;
}

/** Bytes a frame of an `n`-byte message takes on the wire. */
export function frameSize(n: number): number {
  return decimalDigits(n) + 1 + n;
}

/** Writes a frame for `src[start, end)` at `out[offset]`; returns the offset after it. */
export function writeFrame(out: Buffer, offset: number, src: Buffer, start: number, end: number): number {
  let o = writeDecimal(out, offset, end - start);
  out[o++] = SP;
  return o + src.copy(out, o, start, end);
}

/** One message as a frame. Refuses an empty message: MSG-LEN has no zero. */
export function encodeFrame(message: string | Buffer): Buffer {
  const body = typeof message === 'string' ? Buffer.from(message, 'utf8') : message;
  if (body.length === 0) throw new RangeError('a syslog frame cannot be empty');
  const out = Buffer.allocUnsafe(frameSize(body.length));
  writeFrame(out, 0, body, 0, body.length);
  return out;
}

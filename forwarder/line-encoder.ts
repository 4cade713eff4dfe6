import { formatCorralControl, MAX_BATCH_LINES } from '../protocol/syslog-corral.js';
import { frameSize, writeDecimal, writeFrame } from '../protocol/syslog-frame.js';

const LF = 0x0a;
const SP = 0x20;
/** Room kept before each batch's lines for its header frame (which is at most ~64 bytes). */
const HEADER_RESERVE = 80;

export interface EncodeOptions {
  /** Corral session slot of the stream; batches are only written in `corral` mode. */
  readonly slot: number;
  readonly corral: boolean;
  /** Largest message: a longer line travels in pieces of this many bytes. */
  readonly maxMessageBytes: number;
  /** Line bytes after which a batch is closed. */
  readonly maxBatchBytes: number;
  /** The chunk ends the file for good (it was rotated away): send an unterminated last line too. */
  readonly final?: boolean;
}

export interface Encoded {
  /** Bytes to write, in order (views of the encoding buffer). */
  readonly segments: Buffer[];
  /** File bytes consumed from the start of the chunk: complete lines, pieces, empty lines. */
  readonly consumed: number;
  readonly lines: number;
}

/**
 * An encoding buffer: file bytes are read into `buf` at `sourceOffset`, and frames are then
 * written from offset 0 over the part already consumed (one memmove per line, no other copy).
 */
export interface EncodeBuffer {
  readonly buf: Buffer;
  readonly sourceOffset: number;
}

/** A buffer that can take `chunkBytes` of file and their frames, however short the lines. */
export function encodeBuffer(chunkBytes: number): EncodeBuffer {
  const sourceOffset = chunkBytes + 2 * HEADER_RESERVE + 64;
  return { buf: Buffer.allocUnsafe(sourceOffset + chunkBytes), sourceOffset };
}

/**
 * Encoding buffers whose frames have been written out, kept for the next reads so a busy
 * forwarder does not allocate (and collect) two chunks' worth per read.
 */
export class EncodeBufferPool {
  private readonly spare: EncodeBuffer[] = [];

  constructor(
    private readonly chunkBytes: number,
    private readonly keep = 4,
  ) {}

  take(): EncodeBuffer {
    return this.spare.pop() ?? encodeBuffer(this.chunkBytes);
  }

  give(target: EncodeBuffer): void {
    if (this.spare.length < this.keep) this.spare.push(target);
  }
}

/**
 * Encodes the complete lines at the start of the `length` file bytes at `sourceOffset`, which
 * begin at stream position `startPos`, as octet-counted frames (one line without its LF each),
 * grouped into Corral batches in `corral` mode. An incomplete last line is left for the next
 * read, unless it is already longer than a message; empty lines are skipped (they end a batch,
 * as a batch's lines must be consecutive). Output never overtakes unread input, so a chunk of
 * many tiny or empty lines is simply consumed in part.
 */
export function encodeLines(
  target: EncodeBuffer,
  length: number,
  startPos: number,
  options: EncodeOptions,
): Encoded {
  const { corral, maxMessageBytes, maxBatchBytes, slot } = options;
  const { buf, sourceOffset: base } = target;
  const view = buf.subarray(base, base + length);
  const segments: Buffer[] = [];
  let o = 0;
  let pos = 0;
  let lines = 0;
  let batchAt = -1;
  let batchStart = 0;
  let batchCount = 0;
  let batchBytes = 0;

  const closeBatch = (): void => {
    if (batchAt < 0) return;
    const header = Buffer.from(
      formatCorralControl({ kind: 'batch', slot, start: batchStart, end: startPos + pos, count: batchCount }),
      'latin1',
    );
    const headerStart = batchAt + HEADER_RESERVE - frameSize(header.length);
    writeFrame(buf, headerStart, header, 0, header.length);
    segments.push(buf.subarray(headerStart, o));
    batchAt = -1;
  };

  while (pos < length) {
    const nl = view.indexOf(LF, pos);
    let lineLen: number;
    let piece = false;
    if (nl !== -1 && nl - pos <= maxMessageBytes) {
      lineLen = nl - pos;
    } else if ((nl === -1 ? length : nl) - pos > maxMessageBytes) {
      lineLen = maxMessageBytes;
      piece = true;
    } else if (nl === -1 && options.final === true) {
      lineLen = length - pos;
      piece = true;
    } else {
      break;
    }
    if (lineLen === 0) {
      closeBatch();
      pos = nl + 1;
      continue;
    }
    const need = frameSize(lineLen) + (corral && batchAt < 0 ? HEADER_RESERVE : 0);
    if (o + need > base + pos) break;
    if (corral && batchAt < 0) {
      batchAt = o;
      o += HEADER_RESERVE;
      batchStart = startPos + pos;
      batchCount = 0;
      batchBytes = 0;
    }
    o = writeDecimal(buf, o, lineLen);
    buf[o++] = SP;
    buf.copyWithin(o, base + pos, base + pos + lineLen);
    o += lineLen;
    lines++;
    pos = piece ? pos + lineLen : pos + lineLen + 1;
    if (corral) {
      batchCount++;
      batchBytes += lineLen;
      if (piece || batchCount >= MAX_BATCH_LINES || batchBytes >= maxBatchBytes) closeBatch();
    }
  }
  closeBatch();
  if (!corral && o > 0) segments.push(buf.subarray(0, o));
  return { segments, consumed: pos, lines };
}

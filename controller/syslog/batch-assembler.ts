import { CorralProtocolError } from '../../protocol/syslog-corral.js';
import { escapeControls, needsEscape } from './escape-controls.js';

const LF = 0x0a;

export interface AssembledBatch {
  /** Lines not yet written, each ending in LF, in order; empty when every line was a duplicate. */
  readonly data: Buffer[];
  readonly bytes: number;
  readonly keptLines: number;
  readonly duplicateLines: number;
  /** Lines that straddled the stream's position (only if two runs disagree on boundaries). */
  readonly partialLines: number;
}

/**
 * Collects the `count` line frames of one Corral batch (see protocol/syslog-corral.ts),
 * computing each line's end position, dropping those at or below the stream's position, and
 * checking that the lines fit the batch's announced range and hold no LF of their own.
 *
 * Lines are compacted in place inside the socket's buffer (each frame's message moves back
 * over its own length prefix and gains an LF), so a line costs one memmove and no copy into
 * another buffer. The buffers are the connection's own and nothing else reads them. Control
 * bytes in a line are escaped (escape-controls.ts), so the ingest file is safe to `cat`.
 */
export class BatchAssembler {
  private readonly segments: Buffer[] = [];
  private bytes = 0;
  private segBuf: Buffer | undefined;
  private segStart = 0;
  private segEnd = 0;
  private segLines = 0;
  private received = 0;
  private position: number;
  private duplicateLines = 0;
  private partialLines = 0;

  constructor(
    readonly slot: number,
    readonly streamId: string,
    private readonly start: number,
    readonly end: number,
    private readonly count: number,
    /** The stream's position when the batch began: lines ending at or below it are dropped. */
    private readonly skipBelow: number,
  ) {
    this.position = start;
  }

  /** True when the batch begins beyond the stream's position: bytes the listener never got. */
  get startsAfterGap(): boolean {
    return this.start > this.skipBelow;
  }

  /** Adds one line frame (the message at `src[from, to)`); returns the batch after the last one. */
  add(src: Buffer, from: number, to: number): AssembledBatch | undefined {
    this.received++;
    const len = to - from;
    const last = this.received === this.count;
    const lineEnd = last ? this.end : this.position + len + 1;
    if (last ? lineEnd < this.position + len : lineEnd >= this.end) {
      throw new CorralProtocolError('batch lines do not fit the batch range');
    }
    if (lineEnd <= this.skipBelow) {
      this.duplicateLines++;
    } else if (this.position < this.skipBelow) {
      this.partialLines++;
    } else {
      this.keep(src, from, to);
    }
    this.position = lineEnd;
    return last ? this.finish() : undefined;
  }

  private keep(src: Buffer, from: number, to: number): void {
    const len = to - from;
    if (src !== this.segBuf) {
      this.closeSegment();
      if (from === 0) {
        // The frame's prefix is not in this buffer (it spanned reads): no room to compact.
        const own = Buffer.allocUnsafe(len + 1);
        src.copy(own, 0, from, to);
        own[len] = LF;
        this.checkLineFeeds(own, 1);
        this.push(own);
        return;
      }
      this.segBuf = src;
      // Every frame has at least "N " before its message, so the line fits one byte earlier.
      this.segStart = this.segEnd = from - 1;
    }
    src.copyWithin(this.segEnd, from, to);
    this.segEnd += len;
    src[this.segEnd++] = LF;
    this.segLines++;
  }

  private closeSegment(): void {
    if (!this.segBuf) return;
    const segment = this.segBuf.subarray(this.segStart, this.segEnd);
    this.checkLineFeeds(segment, this.segLines);
    this.push(segment);
    this.segBuf = undefined;
    this.segLines = 0;
  }

  /** Keeps lines (LFs checked to be only their ends), control bytes escaped for the ingest file. */
  private push(lines: Buffer): void {
    const out = needsEscape(lines, false) ? escapeControls(lines, false) : lines;
    this.segments.push(out);
    this.bytes += out.length;
  }

  private checkLineFeeds(segment: Buffer, lines: number): void {
    let lfs = 0;
    for (let i = segment.indexOf(LF); i !== -1; i = segment.indexOf(LF, i + 1)) lfs++;
    if (lfs !== lines) throw new CorralProtocolError('a batch line contains a line feed');
  }

  private finish(): AssembledBatch {
    this.closeSegment();
    return {
      data: this.segments,
      bytes: this.bytes,
      keptLines: this.count - this.duplicateLines - this.partialLines,
      duplicateLines: this.duplicateLines,
      partialLines: this.partialLines,
    };
  }
}

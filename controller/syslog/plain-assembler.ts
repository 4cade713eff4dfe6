import { escapeControls, needsEscape } from './escape-controls.js';

const LF = 0x0a;

/**
 * Turns the frames of a standard RFC 5425 sender into ingest lines: one trailing LF (which
 * many senders put inside the frame) is dropped, an LF inside a message is written as `#012`
 * and other control bytes the same way (rsyslog's escape, see escape-controls.ts), and empty
 * messages are skipped. Lines collect into one buffer per socket read, handed to the writer
 * by `take()`.
 */
export class PlainAssembler {
  private buf: Buffer | undefined;
  private length = 0;
  private lines = 0;

  /** Prepares room for the frames of `bytes` of input (a frame never yields more, unless escaped). */
  reserve(bytes: number): void {
    if (!this.buf) {
      this.buf = Buffer.allocUnsafe(bytes);
      this.length = 0;
    }
  }

  add(src: Buffer, from: number, to: number): void {
    let end = to;
    if (end > from && src[end - 1] === LF) end--;
    if (end === from) return;
    let line = src.subarray(from, end);
    if (needsEscape(line, true)) line = escapeControls(line, true);
    this.ensure(line.length + 1);
    const buf = this.buf as Buffer;
    this.length += line.copy(buf, this.length);
    buf[this.length++] = LF;
    this.lines++;
  }

  /** The lines collected since the last call, and how many there are. */
  take(): { data: Buffer; lines: number } | undefined {
    if (!this.buf || this.length === 0) return undefined;
    const out = { data: this.buf.subarray(0, this.length), lines: this.lines };
    this.buf = undefined;
    this.length = 0;
    this.lines = 0;
    return out;
  }

  private ensure(bytes: number): void {
    if (this.buf && this.buf.length - this.length >= bytes) return;
    const grown = Buffer.allocUnsafe(Math.max(bytes + this.length, (this.buf?.length ?? 0) * 2, 4096));
    if (this.buf) this.buf.copy(grown, 0, 0, this.length);
    this.buf = grown;
  }
}

import { describe, expect, it } from 'vitest';
import { BatchAssembler } from '../controller/syslog/batch-assembler.js';
import { encodeBuffer, encodeLines, type EncodeOptions } from '../forwarder/line-encoder.js';
import { isCorralControl, parseCorralControl } from '../protocol/syslog-corral.js';
import { FrameParser } from '../protocol/syslog-frame.js';

const OPTIONS: EncodeOptions = { slot: 0, corral: true, maxMessageBytes: 64, maxBatchBytes: 100 };

/**
 * Runs a file through the forwarder's encoder and the listener's batch assembly, the way the
 * two meet over the wire: returns what the listener would write, the batch ends it would
 * record, and how many bytes of the file were consumed.
 */
function ship(file: string, skipBelow: number, options: EncodeOptions = OPTIONS, chunkBytes = 256) {
  const bytes = Buffer.from(file, 'latin1');
  const parser = new FrameParser(options.maxMessageBytes);
  const written: string[] = [];
  const ends: number[] = [];
  let batch: BatchAssembler | undefined;
  let position = 0;
  let skip = skipBelow;
  for (;;) {
    const target = encodeBuffer(chunkBytes);
    const length = bytes.copy(target.buf, target.sourceOffset, position, position + chunkBytes);
    const encoded = encodeLines(target, length, position, {
      ...options,
      final: position + length >= bytes.length,
    });
    if (encoded.consumed === 0) break;
    position += encoded.consumed;
    for (const segment of encoded.segments) {
      parser.push(Buffer.from(segment), (buf, s, e) => {
        if (batch) {
          const done = batch.add(buf, s, e);
          if (done) {
            written.push(...done.data.map((d) => d.toString('latin1')));
            ends.push(batch.end);
            skip = Math.max(skip, batch.end);
            batch = undefined;
          }
          return;
        }
        expect(isCorralControl(buf, s, e)).toBe(true);
        const msg = parseCorralControl(buf, s, e);
        if (msg.kind !== 'batch') throw new Error(`unexpected ${msg.kind}`);
        batch = new BatchAssembler(msg.slot, 'a'.repeat(32), msg.start, msg.end, msg.count, skip);
      });
    }
  }
  return { written: written.join(''), ends, consumed: position };
}

const FILES: Record<string, string> = {
  'short lines': Array.from({ length: 40 }, (_, i) => `line ${i}\n`).join(''),
  'empty lines between': 'one\n\n\ntwo\n\nthree\n',
  'a line longer than a message': `start\n${'L'.repeat(150)}\nend\n`,
  'a line exactly a message long': `${'M'.repeat(64)}\nnext\n`,
  'an unterminated last line': 'first\nsecond without LF',
  'CRLF line ends': 'a\r\nb\r\n',
};

describe('forwarder encoding meets listener batch assembly', () => {
  for (const [name, file] of Object.entries(FILES)) {
    it(`${name}: every line once, in order, with positions the file agrees with`, () => {
      const { written, ends, consumed } = ship(file, 0);
      expect(consumed).toBe(Buffer.byteLength(file, 'latin1'));
      const expected = file
        .split('\n')
        .filter((l) => l.length > 0)
        .map((l) => (l.length > 64 ? l.match(/.{1,64}/g)!.join('\n') : l))
        .join('\n')
        .replace(/\r/g, '#015');
      expect(written).toBe(`${expected}\n`);
      expect(ends[ends.length - 1]).toBe(consumed);
    });

    it(`${name}: resending from any recorded position writes only what comes after it`, () => {
      const full = ship(file, 0);
      for (const resumeAt of [0, ...full.ends]) {
        const again = ship(file, resumeAt);
        const before = ship(file.slice(0, resumeAt), 0).written;
        expect(before + again.written).toBe(full.written);
      }
    });
  }

  it('consumes a chunk of many tiny lines in parts, never writing over unread input', () => {
    const file = 'a\n\n'.repeat(500);
    const { written, consumed } = ship(file, 0, OPTIONS, 64);
    expect(consumed).toBe(file.length);
    expect(written).toBe('a\n'.repeat(500));
  });

  it('in rfc5425 mode writes plain frames, one per line', () => {
    const target = encodeBuffer(256);
    const length = target.buf.write('x1\ny22\n', target.sourceOffset, 'latin1');
    const encoded = encodeLines(target, length, 0, { ...OPTIONS, corral: false });
    expect(Buffer.concat(encoded.segments).toString('latin1')).toBe('2 x13 y22');
  });
});

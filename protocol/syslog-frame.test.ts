import { describe, expect, it } from 'vitest';
import { encodeFrame, FrameError, FrameParser, frameSize } from './syslog-frame.js';
import { formatCorralControl, parseCorralControl, CorralProtocolError } from './syslog-corral.js';
import { ErrorCode } from './errors.js';

function parseAll(input: Buffer, cuts: readonly number[], max?: number): string[] {
  const parser = new FrameParser(max);
  const out: string[] = [];
  let from = 0;
  for (const cut of [...cuts, input.length]) {
    parser.push(input.subarray(from, cut), (buf, s, e) => out.push(buf.toString('utf8', s, e)));
    from = cut;
  }
  return out;
}

describe('octet-counted frames', () => {
  const messages = ['<13>1 - - - - - - a', 'b'.repeat(300), 'ü multi-byte', 'x'];
  const stream = Buffer.concat(messages.map((m) => encodeFrame(m)));

  it('parses frames however the stream is cut into reads', () => {
    for (let cut = 0; cut <= stream.length; cut++) {
      expect(parseAll(stream, [cut])).toEqual(messages);
    }
    const everyByte = Array.from({ length: stream.length - 1 }, (_, i) => i + 1);
    expect(parseAll(stream, everyByte)).toEqual(messages);
  });

  it('counts octets, not characters', () => {
    expect(encodeFrame('ü').toString('latin1')).toBe('2 \u00c3\u00bc');
    expect(frameSize(100)).toBe(104);
  });

  it.each([
    ['a letter for a length', 'abc def', ErrorCode.SYSLOG_FRAME],
    ['a leading zero', '05 hello', ErrorCode.SYSLOG_FRAME],
    ['a zero length', '0 ', ErrorCode.SYSLOG_FRAME],
    ['a length that runs into text', '12x hello', ErrorCode.SYSLOG_FRAME],
    ['a length over the cap', '70000 x', ErrorCode.PAYLOAD_TOO_LARGE],
    ['a cap-sized length split across reads', '655', undefined],
  ])('reports %s', (_name, text, reason) => {
    const parser = new FrameParser(65_536);
    let error: unknown;
    try {
      parser.push(Buffer.from(text), () => undefined);
    } catch (e: unknown) {
      error = e;
    }
    if (reason === undefined) {
      expect(error).toBeUndefined();
    } else {
      expect(error).toBeInstanceOf(FrameError);
      expect((error as FrameError).code).toBe(reason);
    }
  });

  it('refuses an oversized frame from its prefix alone, before buffering its data', () => {
    const parser = new FrameParser(1000);
    expect(() => parser.push(Buffer.from('10'), () => undefined)).not.toThrow();
    expect(() => parser.push(Buffer.from('01 '), () => undefined)).toThrow(FrameError);
  });

  it('knows when a frame was left half-sent', () => {
    const parser = new FrameParser();
    parser.push(Buffer.from('5 ab'), () => undefined);
    expect(parser.bufferedBytes).toBeGreaterThan(0);
    parser.push(Buffer.from('cde'), () => undefined);
    expect(parser.bufferedBytes).toBe(0);
  });
});

describe('Corral control frames', () => {
  it('round-trips every kind', () => {
    const id = 'a'.repeat(32);
    for (const msg of [
      { kind: 'open', slot: 3, streamId: id },
      { kind: 'batch', slot: 0, start: 10, end: 20, count: 2 },
      { kind: 'at', slot: 63, position: 0 },
      { kind: 'ack', slot: 1, position: 9_007_199_254_740_991 },
    ] as const) {
      const text = Buffer.from(formatCorralControl(msg));
      expect(parseCorralControl(text, 0, text.length)).toEqual(msg);
    }
  });

  it.each([
    '@corral/1 open 64 ' + 'a'.repeat(32),
    '@corral/1 open 1 ' + 'A'.repeat(32),
    '@corral/1 batch 0 20 10 1',
    '@corral/1 batch 0 0 10 0',
    '@corral/1 ack 0 99999999999999999',
    '@corral/1 ack 0 01',
    '@corral/1 hello',
  ])('refuses %s', (text) => {
    const buf = Buffer.from(text);
    expect(() => parseCorralControl(buf, 0, buf.length)).toThrow(CorralProtocolError);
  });
});

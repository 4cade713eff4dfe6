import { describe, expect, it } from 'vitest';
import { createSseReader, MAX_SSE_LINE_CHARS } from './sse-reader.js';

const STREAM =
  'retry: 1000\n\n: keep-alive\n\nid: 7\nevent: host.online\ndata: {"a":1}\n\n' +
  'id: 8\r\nevent: host.stale\r\ndata: line one\r\ndata:line two\r\n\r\n' +
  'event: truncated\rdata: {"after":8}\r\r';

describe('server-sent event reader', () => {
  const whole = [
    { lastEventId: '7', event: 'host.online', data: '{"a":1}' },
    { lastEventId: '8', event: 'host.stale', data: 'line one\nline two' },
    { lastEventId: '8', event: 'truncated', data: '{"after":8}' },
  ];

  it('reads LF, CRLF and CR lines, joins data lines, keeps the last id, skips comments', () => {
    expect(createSseReader().push(STREAM)).toEqual(whole);
  });

  it('gives the same messages however the stream is cut into chunks (a CRLF split too)', () => {
    for (let size = 1; size <= 7; size++) {
      const reader = createSseReader();
      const got = [];
      for (let i = 0; i < STREAM.length; i += size) got.push(...reader.push(STREAM.slice(i, i + size)));
      expect(got).toEqual(whole);
    }
  });

  it('keeps a message cut off before its blank line to itself', () => {
    const reader = createSseReader();
    expect(reader.push('id: 9\nevent: x\ndata: {"cut"')).toEqual([]);
  });

  it('refuses a line past the limit', () => {
    expect(() => createSseReader().push(`data: ${'x'.repeat(MAX_SSE_LINE_CHARS)}`)).toThrow(RangeError);
  });
});

import { describe, expect, it } from 'vitest';
import { formatCorralControl, parseCorralControl, type CorralControl } from './syslog-corral.js';

const ID = '0123456789abcdef0123456789abcdef';
const KEY = 'fedcba9876543210fedcba9876543210';
const parse = (text: string): CorralControl => {
  const buf = Buffer.from(text, 'latin1');
  return parseCorralControl(buf, 0, buf.length);
};

describe('Corral control frames', () => {
  const messages: CorralControl[] = [
    { kind: 'open', slot: 0, streamId: ID },
    { kind: 'open', slot: 63, streamId: ID, key: KEY },
    { kind: 'batch', slot: 1, start: 0, end: 10, count: 2 },
    { kind: 'at', slot: 2, position: 0 },
    { kind: 'ack', slot: 2, position: 9_007_199_254_740_991 },
    { kind: 'find', slot: 3, key: KEY },
    { kind: 'known', slot: 3, key: KEY, streamId: ID, position: 1234 },
    { kind: 'unknown', slot: 3, key: KEY },
    { kind: 'lost', slot: 4, streamId: ID, bytes: 40_200 },
  ];
  for (const msg of messages) {
    it(`${msg.kind} survives format and parse`, () => {
      expect(parse(formatCorralControl(msg))).toEqual(msg);
    });
  }

  const bad = [
    `@corral/1 find 3 ${KEY.toUpperCase()}`,
    `@corral/1 find 3 ${KEY.slice(1)}`,
    `@corral/1 find 64 ${KEY}`,
    `@corral/1 open 0 ${ID} ${KEY} extra`,
    `@corral/1 known 3 ${KEY} ${ID}`,
    `@corral/1 known 3 ${KEY} ${ID} -1`,
    `@corral/1 unknown 3`,
    `@corral/1 lost 4 ${ID} 01`,
    `@corral/1 lost 4 ${ID}`,
  ];
  for (const text of bad) {
    it(`refuses ${JSON.stringify(text.slice(10))}`, () => {
      expect(() => parse(text)).toThrow(/malformed|out of range/);
    });
  }
});

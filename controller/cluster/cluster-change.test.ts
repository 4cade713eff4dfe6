import { describe, expect, it } from 'vitest';
import { MAX_CLUSTER_CHANGE_CHARS } from '../../protocol/cluster.js';
import { decodeChange, encodeChange } from './cluster-change.js';

const SELF = '0b6f1a52-3d7e-4c2a-9f11-2d5c0e7a9b10';
const PEER = '7c1e9d04-5a2b-4f3e-8d6c-1b0a9e8f7d62';

describe('cluster change payloads', () => {
  it('round-trips every kind from a peer, and knows its own', () => {
    for (const change of [
      { kind: 'host', id: 'h-0123456789abcdef' },
      { kind: 'operator', id: 'op-0123456789abcdef' },
      { kind: 'webhooks', id: 'ops-hook' },
    ] as const) {
      expect(decodeChange(encodeChange(change, PEER), SELF)).toEqual({ change });
      expect(decodeChange(encodeChange(change, SELF), SELF)).toEqual({ own: true });
    }
  });

  it.each([
    ['missing', undefined],
    ['not JSON', 'h-0123'],
    ['a bare string', '"h-0123"'],
    ['an extra field', JSON.stringify({ kind: 'host', id: 'h-1', from: PEER, drop: true })],
    ['no sender', JSON.stringify({ kind: 'host', id: 'h-1' })],
    ['an id with a quote', JSON.stringify({ kind: 'host', id: "h-1' OR 1", from: PEER })],
    ['an empty id', JSON.stringify({ kind: 'host', id: '', from: PEER })],
    ['too long', JSON.stringify({ kind: 'host', id: 'h'.repeat(MAX_CLUSTER_CHANGE_CHARS), from: PEER })],
  ])('drops a payload that is %s as malformed', (_what, payload) => {
    expect(decodeChange(payload, SELF)).toEqual({ ignored: 'malformed' });
  });

  it('ignores a well-formed kind it does not know (a newer release)', () => {
    expect(decodeChange(JSON.stringify({ kind: 'quota', id: 'q1', from: PEER }), SELF)).toEqual({
      ignored: 'unknown-kind',
    });
  });
});

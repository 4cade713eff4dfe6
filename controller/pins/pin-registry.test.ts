import { describe, expect, it } from 'vitest';
import { createPinRegistry, type Pin, type PinRevocation } from './pin-registry.js';

const pin = (fingerprint: string, hostId: string, over: Partial<Pin> = {}): Pin => ({
  fingerprint,
  hostId,
  hostName: `${hostId}-name`,
  role: 'agent',
  notAfterMs: 2_000,
  superseded: false,
  ...over,
});

describe('pin registry', () => {
  it('matches only active, unexpired pins and tells subscribers about revocations', () => {
    let now = 1_000;
    const pins = createPinRegistry({ now: () => now }, [
      pin('a', 'h1'),
      pin('b', 'h1', { role: 'updater' }),
      pin('c', 'h2'),
    ]);
    const seen: PinRevocation[] = [];
    const hosts: string[] = [];
    pins.onRevoke((r) => seen.push(r));
    const off = pins.onRevoked((h) => hosts.push(h));
    expect(pins.lookup('a')).toMatchObject({
      fingerprint: 'a',
      hostId: 'h1',
      hostName: 'h1-name',
      role: 'agent',
    });
    expect(pins.lookup('zz')).toBeUndefined();
    expect(pins.fingerprintsFor('h1', 'updater')).toEqual(['b']);

    pins.revokeHost('h1');
    expect(pins.lookup('a')).toBeUndefined();
    expect(pins.lookup('b')).toBeUndefined();
    expect(seen).toEqual([{ hostId: 'h1', fingerprints: ['a', 'b'], wholeHost: true }]);
    expect(hosts).toEqual(['h1']);

    pins.add([pin('d', 'h2', { notAfterMs: 3_000 })]);
    pins.supersede(['c']);
    expect(pins.supersededFor('h2', 'agent')).toEqual(['c']);
    expect(pins.hasSuperseded('h2')).toBe(true);
    pins.retire(['c']);
    expect(pins.hasSuperseded('h2')).toBe(false);
    expect(seen.at(-1)).toEqual({ hostId: 'h2', fingerprints: ['c'], wholeHost: false });
    expect(hosts).toEqual(['h1']);
    off();

    now = 3_000;
    expect(pins.lookup('d')).toBeUndefined();
    expect(pins.size).toBe(1);
  });

  it('ignores pins added for a host after it was revoked, and tells expired pins apart', () => {
    let now = 1_000;
    const pins = createPinRegistry({ now: () => now }, [pin('a', 'h1'), pin('b', 'h2')]);
    pins.revokeHost('h1');
    // A renewal that committed before the decommission but reached the registry after it.
    pins.add([pin('late', 'h1'), pin('c', 'h2')]);
    expect(pins.lookup('late')).toBeUndefined();
    expect(pins.fingerprintsFor('h1', 'agent')).toEqual([]);
    expect(pins.lookup('c')).toMatchObject({ hostId: 'h2' });

    expect(pins.lookupExpired('b')).toBeUndefined();
    now = 2_000;
    expect(pins.lookup('b')).toBeUndefined();
    expect(pins.lookupExpired('b')).toMatchObject({ hostId: 'h2', hostName: 'h2-name', notAfterMs: 2_000 });
    expect(pins.lookupExpired('unknown')).toBeUndefined();
  });

  it('tells each change once per host, and never adds a retired fingerprint again', () => {
    const pins = createPinRegistry({ now: () => 1_000 }, [pin('a', 'h1'), pin('b', 'h2')]);
    const changed: string[] = [];
    pins.onChanged((h) => changed.push(h));
    pins.add([pin('a2', 'h1'), pin('a3', 'h1')]);
    pins.supersede(['a', 'zz']);
    pins.supersede(['a']);
    pins.retire(['a']);
    pins.retire(['a', 'unknown']);
    expect(changed).toEqual(['h1', 'h1', 'h1']);
    // A read of the database from before the retirement offers it again: it stays retired.
    pins.add([pin('a', 'h1')]);
    expect(pins.lookup('a')).toBeUndefined();
    pins.revokeHost('h2');
    expect(changed).toEqual(['h1', 'h1', 'h1', 'h2']);
  });
});

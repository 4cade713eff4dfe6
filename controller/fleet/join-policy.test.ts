import { describe, expect, it } from 'vitest';
import { createJoinPolicy, normalizeSourceAddress, parseCidr } from './join-policy.js';

const REFUSED = { code: 'CORRAL_ERR_JOIN_ADDRESS_REFUSED' };

describe('join policy: which addresses a joining worker may claim', () => {
  it.each([
    ['10.0.0.0/8', { network: '10.0.0.0', prefix: 8, family: 'ipv4' }],
    ['192.168.1.7', { network: '192.168.1.7', prefix: 32, family: 'ipv4' }],
    ['fd00::/8', { network: 'fd00::', prefix: 8, family: 'ipv6' }],
    ['[2001:db8::1]', { network: '2001:db8::1', prefix: 128, family: 'ipv6' }],
    ['0.0.0.0/0', { network: '0.0.0.0', prefix: 0, family: 'ipv4' }],
  ])('parses %s', (text, parsed) => {
    expect(parseCidr(text)).toEqual(parsed);
  });

  it.each(['10.0.0.0/33', 'fd00::/129', '10.0.0.0/', '10.0.0.0/x', 'example.net/24', '', '10.0.0/8', '/8'])(
    'refuses the CIDR %j',
    (text) => {
      expect(() => parseCidr(text)).toThrow(expect.objectContaining({ code: 'CORRAL_ERR_VALIDATION' }));
    },
  );

  it('allows any address, names included, when no CIDR is configured (the default)', () => {
    const policy = createJoinPolicy();
    for (const address of ['10.1.2.3', '2001:db8::5', 'worker-7.example.net', '203.0.113.9'])
      expect(() => policy.check(address)).not.toThrow();
  });

  it('takes only addresses inside the CIDRs, IPv4 and IPv6 alike', () => {
    const policy = createJoinPolicy({ allowedCidrs: ['10.20.0.0/16', '192.0.2.10', 'fd00:1::/64'] });
    for (const inside of [
      '10.20.0.1',
      '10.20.255.254',
      '192.0.2.10',
      'fd00:1::5',
      '[fd00:1::ffff]',
      '::ffff:10.20.3.4',
    ])
      expect(() => policy.check(inside), inside).not.toThrow();
    for (const outside of ['10.21.0.1', '192.0.2.11', '127.0.0.1', 'fd00:2::5', '::1'])
      expect(() => policy.check(outside), outside).toThrow(expect.objectContaining(REFUSED));
  });

  it('refuses a name when CIDRs are configured: what it resolves to can change after the check', () => {
    const policy = createJoinPolicy({ allowedCidrs: ['0.0.0.0/0', '::/0'] });
    expect(() => policy.check('worker.example.net')).toThrow(/is not an IP address/);
    expect(() => policy.check('203.0.113.9')).not.toThrow();
  });

  it('fails at start on a bad CIDR rather than at the first join', () => {
    expect(() => createJoinPolicy({ allowedCidrs: ['10.0.0.0/8', 'nonsense'] })).toThrow(
      expect.objectContaining({ code: 'CORRAL_ERR_VALIDATION' }),
    );
  });

  it('writes IPv4-mapped peer addresses as IPv4', () => {
    expect(normalizeSourceAddress('::ffff:127.0.0.1')).toBe('127.0.0.1');
    expect(normalizeSourceAddress('127.0.0.2')).toBe('127.0.0.2');
    expect(normalizeSourceAddress('::1')).toBe('::1');
  });
});

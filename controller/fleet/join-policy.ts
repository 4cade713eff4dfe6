import { BlockList, isIP } from 'node:net';
import { CorralError, ErrorCode } from '../../protocol/errors.js';

/**
 * What a join may claim. One object, so that `controller serve` flags now and a config
 * file later feed the same thing.
 */
export interface JoinPolicyOptions {
  /**
   * CIDRs (IPv4 or IPv6; a bare address is a /32 or /128) the address a joining worker
   * claims must lie in. Empty: any address, names included (the default).
   */
  readonly allowedCidrs: readonly string[];
}

export const DEFAULT_JOIN_POLICY: JoinPolicyOptions = { allowedCidrs: [] };

export interface JoinPolicy {
  readonly allowedCidrs: readonly string[];
  /** Throws CORRAL_ERR_JOIN_ADDRESS_REFUSED unless `claimed` may be recorded for a host. */
  check(claimed: string): void;
}

interface Cidr {
  readonly network: string;
  readonly prefix: number;
  readonly family: 'ipv4' | 'ipv6';
}

/** `[::1]` and `fe80::1%eth0` as the bare address; an IPv4-mapped IPv6 address as IPv4. */
function bareAddress(text: string): string {
  const unbracketed = text.replace(/^\[(.*)\]$/, '$1');
  const unzoned = unbracketed.replace(/%.*$/, '');
  const mapped = /^::ffff:(\d{1,3}(?:\.\d{1,3}){3})$/i.exec(unzoned);
  return mapped?.[1] ?? unzoned;
}

/** Parses `10.0.0.0/8`, `fd00::/8` or a bare address. Throws CORRAL_ERR_VALIDATION. */
export function parseCidr(text: string): Cidr {
  const slash = text.indexOf('/');
  const network = bareAddress(slash === -1 ? text : text.slice(0, slash));
  const version = isIP(network);
  if (version === 0) {
    throw new CorralError(
      ErrorCode.VALIDATION,
      `${JSON.stringify(text)} is not a CIDR (like 10.0.0.0/8 or fd00::/8)`,
    );
  }
  const max = version === 4 ? 32 : 128;
  const prefixText = slash === -1 ? String(max) : text.slice(slash + 1);
  const prefix = /^\d{1,3}$/.test(prefixText) ? Number(prefixText) : Number.NaN;
  if (!(prefix >= 0 && prefix <= max)) {
    throw new CorralError(
      ErrorCode.VALIDATION,
      `${JSON.stringify(text)}: the prefix length must be 0 to ${max}`,
    );
  }
  return { network, prefix, family: version === 4 ? 'ipv4' : 'ipv6' };
}

/** A peer address as it is recorded: IPv4-mapped IPv6 (`::ffff:10.0.0.5`) written as IPv4. */
export function normalizeSourceAddress(address: string): string {
  return bareAddress(address);
}

/** Builds the policy; every CIDR is parsed up front, so a bad one fails at start (VALIDATION). */
export function createJoinPolicy(options: JoinPolicyOptions = DEFAULT_JOIN_POLICY): JoinPolicy {
  const cidrs = options.allowedCidrs.map(parseCidr);
  const allowed = new BlockList();
  for (const c of cidrs) allowed.addSubnet(c.network, c.prefix, c.family);
  const described = options.allowedCidrs.join(', ');
  return {
    allowedCidrs: [...options.allowedCidrs],
    check(claimed) {
      if (cidrs.length === 0) return;
      const address = bareAddress(claimed);
      const version = isIP(address);
      if (version === 0) {
        throw new CorralError(
          ErrorCode.JOIN_ADDRESS_REFUSED,
          `the claimed address ${claimed} is not an IP address; this controller takes joins only from addresses in ${described}`,
        );
      }
      if (!allowed.check(address, version === 4 ? 'ipv4' : 'ipv6')) {
        throw new CorralError(
          ErrorCode.JOIN_ADDRESS_REFUSED,
          `the claimed address ${claimed} is outside the addresses this controller accepts for joins (${described})`,
        );
      }
    },
  };
}

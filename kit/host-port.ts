import { CorralError, ErrorCode } from '../protocol/errors.js';

/** Listen hosts that bind every address: a peer cannot be told to dial them. */
const WILDCARD_HOSTS: ReadonlySet<string> = new Set(['0.0.0.0', '::', '']);

/** Whether `host` (as given to listen) is a wildcard rather than an address to advertise. */
export function isWildcardHost(host: string): boolean {
  return WILDCARD_HOSTS.has(host);
}

/** `host:port` for a bound AddressInfo-like value, with IPv6 in brackets. */
export function formatHostPort(host: string, port: number): string {
  return host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;
}

/** Splits `host:port` (IPv6 in brackets); throws on anything else. */
export function parseHostPort(value: string): { host: string; port: number } {
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([^:\s[\]]+)):(\d{1,5})$/.exec(value.trim());
  const port = m ? Number(m[3]) : NaN;
  if (!m || port > 65535)
    throw new CorralError(ErrorCode.VALIDATION, `expected HOST:PORT, got ${JSON.stringify(value)}`);
  return { host: m[1] ?? m[2] ?? '', port };
}

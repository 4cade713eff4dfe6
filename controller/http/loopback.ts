import { isIP } from 'node:net';

/**
 * Whether a listen host binds loopback only: `localhost`, 127.0.0.0/8, `::1` (also as
 * IPv4-mapped). A wildcard or any other address is not.
 */
export function isLoopbackHost(host: string): boolean {
  const h = host.toLowerCase();
  if (h === 'localhost' || h === '::1') return true;
  const v4 = h.startsWith('::ffff:') ? h.slice(7) : h;
  return isIP(v4) === 4 && v4.startsWith('127.');
}

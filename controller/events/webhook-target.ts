import { isIP } from 'node:net';
import { MAX_WEBHOOK_URL_BYTES } from '../../protocol/admin-notify.js';
import { CorralError, ErrorCode } from '../../protocol/errors.js';

const refused = (why: string): CorralError =>
  new CorralError(ErrorCode.WEBHOOK_TARGET_REFUSED, `url: ${why}`);

/** True for 127.0.0.0/8, ::1 (also IPv4-mapped) and the name `localhost`. */
export function isLoopbackHost(hostname: string): boolean {
  const host = hostname.replace(/^\[(.*)\]$/, '$1').toLowerCase();
  if (host === 'localhost') return true;
  if (isIP(host) === 4) return host.startsWith('127.');
  if (isIP(host) === 6) return host === '::1' || /^::ffff:127\./.test(host) || /^::ffff:7f/.test(host);
  return false;
}

/**
 * The URL a webhook may POST to, normalized, or CORRAL_ERR_WEBHOOK_TARGET_REFUSED saying why
 * not: at most MAX_WEBHOOK_URL_BYTES, absolute, `https:`, or `http:` to loopback only unless
 * `allowHttp` (the body and its signature would cross the network in clear), no user or
 * password in it (they would be shown wherever the URL is), no fragment.
 */
export function checkWebhookUrl(text: string, allowHttp: boolean): URL {
  if (Buffer.byteLength(text) > MAX_WEBHOOK_URL_BYTES) {
    throw refused(`longer than ${MAX_WEBHOOK_URL_BYTES} bytes`);
  }
  // eslint-disable-next-line no-control-regex -- refusing control characters is the point
  if (/[\x00-\x20\x7f]/.test(text)) throw refused('contains spaces or control characters');
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    // Not an absolute URL: named as such below.
    throw refused('not an absolute URL');
  }
  if (url.protocol !== 'https:' && url.protocol !== 'http:') {
    throw refused(`scheme ${url.protocol.slice(0, 16)} is not https or http`);
  }
  if (url.hostname === '') throw refused('names no host');
  if (url.username !== '' || url.password !== '') {
    throw refused('carries a user name or password; use the signature (or a path token) instead');
  }
  if (url.hash !== '') throw refused('has a fragment');
  if (url.protocol === 'http:' && !allowHttp && !isLoopbackHost(url.hostname)) {
    throw refused(
      `plain http to ${url.hostname} would send events in clear; use https, or pass --allow-http (allowHttp) to accept that`,
    );
  }
  return url;
}

/** Scheme, host and port only: what logs and the audit log name (a path may hold a token). */
export function urlOrigin(text: string): string {
  try {
    return new URL(text).origin;
  } catch {
    // A stored URL was checked when added; this is only for text that never was.
    return 'invalid-url';
  }
}

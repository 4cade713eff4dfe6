import { describe, expect, it } from 'vitest';
import { isCorralError } from '../../protocol/errors.js';
import { checkWebhookUrl, isLoopbackHost, urlOrigin } from './webhook-target.js';

const refusal = (url: string, allowHttp = false): string => {
  try {
    checkWebhookUrl(url, allowHttp);
  } catch (e: unknown) {
    if (isCorralError(e, 'CORRAL_ERR_WEBHOOK_TARGET_REFUSED')) return e.message;
    throw e;
  }
  return 'accepted';
};

describe('webhook targets', () => {
  it.each([
    ['https://hooks.example.net/in', false, 'accepted'],
    ['http://127.0.0.1:9000/in', false, 'accepted'],
    ['http://127.8.9.10/in', false, 'accepted'],
    ['http://[::1]:9000/in', false, 'accepted'],
    ['http://localhost/in', false, 'accepted'],
    ['http://10.0.0.5/in', true, 'accepted'],
    ['http://10.0.0.5/in', false, 'url: plain http to 10.0.0.5'],
    ['http://localhost.evil.example/in', false, 'url: plain http'],
    ['http://127.0.0.1.nip.io/in', false, 'url: plain http'],
    ['file:///etc/passwd', false, 'url: scheme file:'],
    ['https://u:p@example.net/', false, 'url: carries a user name'],
    ['https://example.net/#x', false, 'url: has a fragment'],
    ['https://example.net/a b', false, 'url: contains spaces'],
    ['/relative', false, 'url: not an absolute URL'],
  ])('%s (allow http: %s)', (url, allowHttp, outcome) => {
    expect(refusal(url, allowHttp).startsWith(outcome)).toBe(true);
  });

  it('counts the size limit in bytes', () => {
    expect(refusal(`https://example.net/${'a'.repeat(2000)}`)).toBe('accepted');
    expect(refusal(`https://example.net/${'é'.repeat(1100)}`)).toMatch(/longer than 2048 bytes/);
  });

  it('knows loopback by address, IPv4-mapped too', () => {
    expect(['127.0.0.1', '[::1]', '::ffff:127.0.0.1', '[::ffff:7f00:1]'].map(isLoopbackHost)).toEqual([
      true,
      true,
      true,
      true,
    ]);
    expect(['128.0.0.1', '::2', 'example.net'].map(isLoopbackHost)).toEqual([false, false, false]);
  });

  it('names only the origin of a URL (its path may be a token)', () => {
    expect(urlOrigin('https://hooks.example.net:8443/T0/B0/secret?x=1')).toBe(
      'https://hooks.example.net:8443',
    );
  });
});

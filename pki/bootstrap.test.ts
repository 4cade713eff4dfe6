import { once } from 'node:events';
import type { AddressInfo } from 'node:net';
import { createServer, type Server } from 'node:tls';
import { afterEach, describe, expect, it } from 'vitest';
import { caFromChain, fetchPresentedChain } from './bootstrap.js';
import { createCa } from './ca.js';
import { PkiErrorCode } from './errors.js';

const servers: Server[] = [];
afterEach(() => {
  for (const s of servers.splice(0)) s.close();
});

async function controllerLike(
  certChainPem: string,
  keyPem: string,
): Promise<{ port: number; received: string[] }> {
  const received: string[] = [];
  const server = createServer({ cert: certChainPem, key: keyPem }, (s) => {
    s.on('data', (d: Buffer) => received.push(d.toString()));
    s.end();
  });
  servers.push(server);
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return { port: (server.address() as AddressInfo).port, received };
}

describe('joining by CA pin', () => {
  it('finds the pinned CA in the presented chain and sends nothing on that connection', async () => {
    const ca = await createCa();
    const leaf = await ca.issue({ role: 'controller', commonName: 'controller', ipAddresses: ['127.0.0.1'] });
    const srv = await controllerLike(leaf.certPem + ca.certPem, leaf.keyPem);
    const chain = await fetchPresentedChain('127.0.0.1', srv.port);
    expect(caFromChain(chain, ca.fingerprint)).toBe(ca.certPem);
    expect(srv.received).toEqual([]);
  });

  it('refuses a chain whose CA does not match the pin (a man in the middle)', async () => {
    const real = await createCa();
    const mitm = await createCa({ commonName: 'Corral CA' });
    const leaf = await mitm.issue({
      role: 'controller',
      commonName: 'controller',
      ipAddresses: ['127.0.0.1'],
    });
    const srv = await controllerLike(leaf.certPem + mitm.certPem, leaf.keyPem);
    const chain = await fetchPresentedChain('127.0.0.1', srv.port);
    expect(() => caFromChain(chain, real.fingerprint)).toThrow(
      expect.objectContaining({ code: PkiErrorCode.PIN_MISMATCH }),
    );
  });

  it('refuses a pinned CA that did not sign the leaf', async () => {
    const real = await createCa();
    const mitm = await createCa();
    const leaf = await mitm.issue({ role: 'controller', commonName: 'controller' });
    // The impostor sends the real CA along with its own leaf.
    const srv = await controllerLike(leaf.certPem + real.certPem, leaf.keyPem);
    const chain = await fetchPresentedChain('127.0.0.1', srv.port);
    expect(() => caFromChain(chain, real.fingerprint)).toThrow(
      expect.objectContaining({ code: PkiErrorCode.PIN_MISMATCH }),
    );
  });
});

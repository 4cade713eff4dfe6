import { once } from 'node:events';
import { createServer, connect, type Socket } from 'node:net';
import type { AddressInfo } from 'node:net';

/**
 * A TCP relay on loopback between a client and a server (TLS passes through untouched). It
 * forwards both ways until `hold()` says yes for a chunk coming back from the server; from
 * then on nothing more reaches any client. With `hold` asking whether the server has already
 * committed something, a client can be killed at the exact point where the server has done
 * its part and the client has not seen the answer: a network cut at the worst moment.
 */
export interface HoldingProxy {
  readonly port: number;
  /** Resolves when the first chunk has been held back. */
  readonly held: Promise<void>;
  close(): Promise<void>;
}

export async function holdingProxy(
  target: { host: string; port: number },
  hold: () => Promise<boolean>,
): Promise<HoldingProxy> {
  const sockets = new Set<Socket>();
  let holding = false;
  let markHeld: () => void = () => undefined;
  const held = new Promise<void>((resolve) => (markHeld = resolve));
  const server = createServer((client) => {
    const upstream = connect(target.port, target.host);
    for (const s of [client, upstream]) {
      sockets.add(s);
      s.on('close', () => sockets.delete(s));
      s.on('error', () => undefined /* ECONNRESET when the other side is killed: expected */);
    }
    client.pipe(upstream);
    client.on('end', () => upstream.end());
    upstream.on('data', (chunk: Buffer) => {
      upstream.pause();
      void (async () => {
        if (!holding && (await hold())) {
          holding = true;
          markHeld();
        }
        if (holding) return; // stays paused: this answer never arrives
        client.write(chunk);
        upstream.resume();
      })();
    });
    upstream.on('end', () => {
      if (!holding) client.end();
    });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return {
    port: (server.address() as AddressInfo).port,
    held,
    async close() {
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

import { randomInt } from 'node:crypto';
import { createServer } from 'node:net';
import { CorralError, ErrorCode } from '../../protocol/errors.js';

/**
 * Ports handed to daemons that must be told their port before they start (the controller
 * records a worker's agent and updater ports at enrollment). They come from below Linux's
 * ephemeral range (32768–60999), so neither a port-0 bind nor an outgoing connection's source
 * port can take one between our check and the daemon's bind; each is checked free by binding
 * it, and never handed out twice by this process.
 */
const LOW_PORT = 20_000;
const HIGH_PORT = 32_767;
const MAX_TRIES = 200;
const handedOut = new Set<number>();

async function canBind(host: string, port: number): Promise<boolean> {
  const server = createServer();
  return new Promise<boolean>((resolve) => {
    server.once('error', () => resolve(false));
    server.listen({ host, port, exclusive: true }, () => server.close(() => resolve(true)));
  });
}

/** A TCP port on `host` that was free a moment ago and that no one else is handed. */
export async function freePort(host = '127.0.0.1'): Promise<number> {
  for (let i = 0; i < MAX_TRIES; i++) {
    const port = randomInt(LOW_PORT, HIGH_PORT + 1);
    if (handedOut.has(port)) continue;
    if (await canBind(host, port)) {
      handedOut.add(port);
      return port;
    }
  }
  throw new CorralError(
    ErrorCode.UNAVAILABLE,
    `no free port on ${host} in ${LOW_PORT}-${HIGH_PORT} after ${MAX_TRIES} tries`,
  );
}

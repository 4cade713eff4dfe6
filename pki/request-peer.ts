import type { TLSSocket } from 'node:tls';
import { peerIdentity, type PeerIdentity } from './identity.js';

/**
 * The verified peer identity of the TLS connection an HTTP request arrived on (fastify's
 * `request.raw.socket`, node's `req.socket`). Undefined over plain TCP or without a client
 * certificate. The check runs on the very connection that carries the request.
 */
export function peerOfRequest(raw: { socket: unknown }): PeerIdentity | undefined {
  const socket = raw.socket as Partial<TLSSocket> | null;
  if (!socket || typeof socket.getPeerX509Certificate !== 'function') return undefined;
  return peerIdentity(socket as TLSSocket);
}

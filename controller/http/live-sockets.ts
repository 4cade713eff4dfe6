import type { TLSSocket } from 'node:tls';
import { peerIdentity } from '../../pki/index.js';
import type { PinRegistry } from '../pins/pin-registry.js';

/**
 * The worker API's open TLS connections, by the host their pinned certificate belongs to,
 * so that revoking a host's pins (decommission) or retiring one certificate (after renewal)
 * closes its keep-alive connections at once instead of letting them idle on.
 */
export interface LiveSockets {
  /** Call on every accepted TLS connection (after the handshake). */
  track(socket: TLSSocket): void;
  /** Open connections of a host (all of them, or only those made with these certificates). */
  count(hostId: string, fingerprints?: readonly string[]): number;
  /** Destroys them; returns how many were closed. */
  close(hostId: string, fingerprints?: readonly string[]): number;
  /** Stops following revocations. Idempotent. */
  dispose(): void;
}

export function createLiveSockets(pins: PinRegistry): LiveSockets {
  const byHost = new Map<string, Map<TLSSocket, string>>();

  const select = (hostId: string, fingerprints?: readonly string[]): TLSSocket[] =>
    [...(byHost.get(hostId) ?? [])]
      .filter(([, fp]) => fingerprints === undefined || fingerprints.includes(fp))
      .map(([socket]) => socket);

  const close = (hostId: string, fingerprints?: readonly string[]): number => {
    const doomed = select(hostId, fingerprints);
    for (const socket of doomed) socket.destroy();
    return doomed.length;
  };

  const unsubscribe = pins.onRevoke((r) => {
    close(r.hostId, r.wholeHost ? undefined : r.fingerprints);
  });

  return {
    track(socket) {
      const identity = peerIdentity(socket);
      if (!identity) return;
      const pin = pins.lookup(identity.fingerprint);
      if (!pin) return;
      let sockets = byHost.get(pin.hostId);
      if (!sockets) byHost.set(pin.hostId, (sockets = new Map<TLSSocket, string>()));
      sockets.set(socket, identity.fingerprint);
      socket.once('close', () => {
        const current = byHost.get(pin.hostId);
        current?.delete(socket);
        if (current?.size === 0) byHost.delete(pin.hostId);
      });
    },
    count(hostId, fingerprints) {
      return select(hostId, fingerprints).length;
    },
    close,
    dispose() {
      unsubscribe();
    },
  };
}

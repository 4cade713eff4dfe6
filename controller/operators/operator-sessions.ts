import type { Socket } from 'node:net';

/**
 * The admin API's open connections, by the operator credential that last authenticated a
 * request on each, so that revoking a credential closes its live streams (SSE) and its
 * keep-alive connections at once rather than at their next request.
 */
export interface OperatorSessions {
  /** Call once a request on `socket` authenticated as operator credential `id`. */
  track(id: string, socket: Socket): void;
  /** Destroys the connections of these credentials but `except`; returns how many were closed. */
  close(ids: readonly string[], except?: Socket): number;
  count(id: string): number;
}

export function createOperatorSessions(): OperatorSessions {
  const byId = new Map<string, Set<Socket>>();
  return {
    track(id, socket) {
      let sockets = byId.get(id);
      if (!sockets) byId.set(id, (sockets = new Set<Socket>()));
      if (sockets.has(socket)) return;
      sockets.add(socket);
      socket.once('close', () => {
        const current = byId.get(id);
        current?.delete(socket);
        if (current?.size === 0) byId.delete(id);
      });
    },
    close(ids, except) {
      let closed = 0;
      for (const id of ids) {
        for (const socket of byId.get(id) ?? []) {
          if (socket === except) continue;
          socket.destroy();
          closed += 1;
        }
      }
      return closed;
    },
    count(id) {
      return byId.get(id)?.size ?? 0;
    },
  };
}

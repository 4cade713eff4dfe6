import type { Logger } from 'pino';
import { readControllerList, writeControllerList } from '../../kit/controller-list-file.js';
import { distinctControllers, type ControllerList } from '../../protocol/controller-list.js';

/**
 * The controllers this agent knows of: the list a controller last sent in a heartbeat answer
 * (kept in `controllers.json` next to the bundle), then the bundle's own addresses as a last
 * resort. Lists come only from heartbeat answers, so only over the mutual-TLS link to a
 * `controller` certificate of the bundle's CA; nothing unauthenticated ever changes it.
 */
export interface ControllerDirectory {
  /** Worker API addresses to fail over along, in order. */
  workerAddresses(): string[];
  /**
   * Takes a list from a heartbeat answer: entries repeating an earlier worker address are
   * dropped. When it differs from the kept one it is written atomically first, then used.
   * Resolves true when it changed; rejects with the write error (nothing changed then).
   */
  accept(list: ControllerList, receivedAt: Date): Promise<boolean>;
}

const sameList = (a: ControllerList, b: ControllerList): boolean =>
  a.length === b.length && a.every((c, i) => c.worker === b[i]?.worker && c.syslog === b[i]?.syslog);

/**
 * Reads the kept list of `stateDir`. A damaged or oversized file is logged and left out (the
 * bundle's addresses still work; the next heartbeat answer writes it again), never fatal.
 */
export async function openControllerDirectory(o: {
  readonly stateDir: string;
  readonly bundleAddresses: readonly string[];
  readonly log: Logger;
}): Promise<ControllerDirectory> {
  let kept: ControllerList = [];
  try {
    kept = distinctControllers((await readControllerList(o.stateDir))?.controllers ?? []);
  } catch (err: unknown) {
    o.log.warn(
      { err },
      'the kept controller list is unreadable; using the bundle addresses until a heartbeat answer brings it',
    );
  }
  return {
    workerAddresses: () => [...new Set([...kept.map((c) => c.worker), ...o.bundleAddresses])],
    async accept(list, receivedAt) {
      const next = distinctControllers(list);
      if (next.length === 0 || sameList(next, kept)) return false;
      await writeControllerList(o.stateDir, next, receivedAt);
      o.log.info(
        { controllers: next.map((c) => c.worker), before: kept.map((c) => c.worker) },
        'controller list changed',
      );
      kept = next;
      return true;
    },
  };
}

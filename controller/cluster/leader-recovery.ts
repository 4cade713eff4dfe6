import { setTimeout as sleep } from 'node:timers/promises';
import type { Logger } from 'pino';
import type { Deployer } from '../deploy/deployer.js';
import type { ClusterLink } from './cluster-link.js';

/** How often the leader looks for operations of controllers that died while it led, in ms. */
export const DEFAULT_RECOVER_EVERY_MS = 10_000;

export interface LeaderRecovery {
  /** Ends the periodic check (after the controller's signal aborted) and waits for it. Idempotent. */
  close(): Promise<void>;
}

/**
 * What a controller does on becoming leader, before it runs any background work (see
 * ClusterLink.whenAcquired): operations the controllers that are gone left running are ended
 * (`deployer.recover`; at this process's first leadership with no other controller alive,
 * with every unconfirmed dispatch, as a lone controller's start), then `takeOver` runs (host
 * status events go on from the database). With `peers`, while it leads it looks again every
 * `everyMs`, for a follower that died meanwhile.
 */
export function startLeaderRecovery(o: {
  readonly cluster: ClusterLink;
  readonly deployer: Pick<Deployer, 'recover'>;
  readonly takeOver: () => Promise<void>;
  readonly log: Logger;
  readonly signal: AbortSignal;
  readonly peers: boolean;
  readonly everyMs?: number;
}): LeaderRecovery {
  const { cluster, log } = o;
  let first = true;
  const recover = async (everyUnconfirmed: boolean): Promise<void> => {
    const live = await cluster.liveControllers();
    const ended = await o.deployer.recover({ live, everyUnconfirmed: everyUnconfirmed && live.size === 1 });
    if (ended.length > 0)
      log.warn(
        { operations: ended, controllers: live.size },
        'ended operations of controllers that are gone',
      );
  };
  cluster.whenAcquired(async () => {
    await recover(first);
    first = false;
    await o.takeOver();
  });
  const everyMs = o.everyMs ?? DEFAULT_RECOVER_EVERY_MS;
  const loop = (async () => {
    if (!o.peers) return;
    while (!o.signal.aborted) {
      await sleep(everyMs, undefined, { signal: o.signal }).catch(() => undefined /* closing */);
      if (o.signal.aborted || !cluster.isLeader()) continue;
      await recover(false).catch((err: unknown) =>
        log.warn({ err }, 'looking for operations of controllers that are gone failed; will retry'),
      );
    }
  })();
  return { close: () => loop };
}

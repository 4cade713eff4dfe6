import { Value } from '@sinclair/typebox/value';
import type { Kysely } from 'kysely';
import type { Logger } from 'pino';
import type { ControllerDatabase } from '../db/schema.js';
import {
  ControllerAddresses,
  distinctControllers,
  MAX_LISTED_CONTROLLERS,
  type ControllerList,
} from '../../protocol/controller-list.js';
import type { ControllerAddress } from './controller-addresses.js';

/** How long a list read from the database is given out again, in ms. */
export const CONTROLLER_LIST_TTL_MS = 5_000;

export interface ControllerListSourceOptions {
  readonly db: Kysely<ControllerDatabase>;
  /** This controller's cluster id. */
  readonly self: string;
  /** Whether other controllers share the database (PostgreSQL); without, the list is this one. */
  readonly peers: boolean;
  readonly live: () => Promise<ReadonlySet<string>>;
  /** Where this controller is reached; undefined until it listens. */
  readonly own: () => ControllerAddress | undefined;
  readonly now: () => number;
  readonly log: Logger;
}

/** An address a worker can be told of: a row that fails the wire schema (not HOST:PORT) is left out. */
const listable = (a: ControllerAddress): a is ControllerList[number] => Value.Check(ControllerAddresses, a);

/**
 * The list a heartbeat answer carries: this controller first, then the other live ones
 * (oldest start first), each worker address once, at most MAX_LISTED_CONTROLLERS. Read from
 * the database at most once per CONTROLLER_LIST_TTL_MS (one read at a time); when the read
 * fails, the last list (or this controller alone) is given, and the failure logged.
 */
export function createControllerListSource(
  o: ControllerListSourceOptions,
): () => Promise<ControllerList | undefined> {
  let cached: { list: ControllerList; at: number } | undefined;
  let reading: Promise<ControllerList | undefined> | undefined;

  async function read(own: ControllerAddress): Promise<ControllerList> {
    const entries: ControllerAddress[] = [own];
    if (o.peers) {
      const others = [...(await o.live())].filter((id) => id !== o.self);
      if (others.length > 0) {
        const rows = await o.db
          .selectFrom('controller_addresses')
          .select(['worker', 'syslog'])
          .where('controller_id', 'in', others)
          .orderBy('started_at')
          .orderBy('controller_id')
          .execute();
        for (const r of rows)
          entries.push({ worker: r.worker, ...(r.syslog !== null && { syslog: r.syslog }) });
      }
    }
    return distinctControllers(entries.filter(listable)).slice(0, MAX_LISTED_CONTROLLERS);
  }

  return async () => {
    const own = o.own();
    if (own === undefined || !listable(own)) return undefined;
    const nowMs = o.now();
    if (cached && nowMs - cached.at < CONTROLLER_LIST_TTL_MS) return cached.list;
    reading ??= read(own)
      .then(
        (list) => {
          cached = { list, at: o.now() };
          return list;
        },
        (err: unknown) => {
          o.log.warn(
            { err },
            "cannot read the other controllers' addresses; heartbeat answers list the last known",
          );
          return cached?.list ?? [own];
        },
      )
      .finally(() => (reading = undefined));
    return reading;
  };
}

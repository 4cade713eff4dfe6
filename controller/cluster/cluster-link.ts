import { setTimeout as sleep } from 'node:timers/promises';
import pg from 'pg';
import type { Logger } from 'pino';
import type { DatabaseTarget } from '../db/database-target.js';

/**
 * The advisory lock key the leader holds (session level, on the link's own connection):
 * 0x636f7272 is "corr" in ASCII, so no other application's key is likely to collide.
 */
export const LEADER_LOCK_KEY = 0x636f7272;
/** The channel a controller announces a revoked host on (payload: the host id). */
export const REVOCATION_CHANNEL = 'corral_revocations';
/** How often a follower tries the leader lock, and a dead link reconnects, in ms. */
export const DEFAULT_LEADER_RETRY_MS = 1_000;
/** How often the pins are re-read from the database anyway (a NOTIFY missed while down), in ms. */
export const DEFAULT_RESYNC_MS = 10_000;
const CONNECT_TIMEOUT_MS = 5_000;
/** A host id in a notification longer than this is not ours and is dropped. */
const MAX_PAYLOAD_CHARS = 200;

/**
 * What several controllers on one database share beyond the rows: who runs background work,
 * and news of revocations. On SQLite there is only ever one controller: it is always leader
 * and nothing is announced.
 */
export interface ClusterLink extends AsyncDisposable {
  /** Whether this controller runs background work now (held the lock at its last check). */
  isLeader(): boolean;
  /** Resolves once the first try for the lock has ended (taken or not, or the database unreachable). */
  firstCheck(): Promise<void>;
  /** Tells the other controllers that a host was revoked (best effort; they resync anyway). */
  announceRevoked(hostId: string): Promise<void>;
  /** For /metrics. */
  metricsLines(): string[];
  /** Releases the lock (by closing its connection) and stops. Idempotent. */
  close(): Promise<void>;
}

export interface ClusterLinkOptions {
  readonly database: DatabaseTarget | undefined;
  readonly log: Logger;
  /** Another controller revoked this host. */
  readonly onRevoked: (hostId: string) => void;
  /** Re-read shared state (on every (re)connect, and every `resyncMs`). */
  readonly onResync: () => Promise<void>;
  readonly leaderRetryMs?: number;
  readonly resyncMs?: number;
}

export function createClusterLink(o: ClusterLinkOptions): ClusterLink {
  if (o.database?.kind !== 'postgres') {
    let closed = false;
    return {
      isLeader: () => !closed,
      firstCheck: () => Promise.resolve(),
      announceRevoked: () => Promise.resolve(),
      metricsLines: () => leaderLines(!closed, 0),
      close: () => {
        closed = true;
        return Promise.resolve();
      },
      [Symbol.asyncDispose]: () => {
        closed = true;
        return Promise.resolve();
      },
    };
  }
  return createPostgresLink(o, o.database.url);
}

function leaderLines(leader: boolean, takeovers: number): string[] {
  return [
    '# HELP corral_controller_leader 1 while this controller runs background work (the leader), else 0.',
    '# TYPE corral_controller_leader gauge',
    `corral_controller_leader ${leader ? 1 : 0}`,
    '# HELP corral_controller_leader_acquired_total Times this controller became leader.',
    '# TYPE corral_controller_leader_acquired_total counter',
    `corral_controller_leader_acquired_total ${takeovers}`,
  ];
}

/**
 * Leadership is a session-level advisory lock on one dedicated connection: held while that
 * connection lives, released by the server when it dies (a killed controller, a network
 * partition). The same connection LISTENs for revocations. A connection that errors makes this
 * controller a follower at once; the loop reconnects every `leaderRetryMs`.
 */
function createPostgresLink(o: ClusterLinkOptions, url: string): ClusterLink {
  const retryMs = o.leaderRetryMs ?? DEFAULT_LEADER_RETRY_MS;
  const resyncMs = o.resyncMs ?? DEFAULT_RESYNC_MS;
  const stop = new AbortController();
  let client: pg.Client | undefined;
  let leader = false;
  let acquired = 0;
  const announcer = new pg.Pool({
    connectionString: url,
    max: 1,
    connectionTimeoutMillis: CONNECT_TIMEOUT_MS,
    application_name: 'corral-controller-notify',
  });
  announcer.on('error', (err) => o.log.warn({ err }, 'notify connection failed'));

  const drop = (c: pg.Client, why: string, err?: unknown): void => {
    if (client !== c) return;
    client = undefined;
    if (leader) o.log.warn({ err, why }, 'leadership lost');
    leader = false;
    c.end().catch(() => undefined /* already broken */);
  };

  async function connect(): Promise<pg.Client> {
    const c = new pg.Client({
      connectionString: url,
      connectionTimeoutMillis: CONNECT_TIMEOUT_MS,
      application_name: 'corral-controller-leader',
      keepAlive: true,
    });
    c.on('error', (err) => drop(c, 'connection error', err));
    c.on('end', () => drop(c, 'connection ended'));
    c.on('notification', (n) => {
      if (n.channel !== REVOCATION_CHANNEL || !n.payload || n.payload.length > MAX_PAYLOAD_CHARS) return;
      o.onRevoked(n.payload);
    });
    await c.connect();
    await c.query(`LISTEN ${REVOCATION_CHANNEL}`);
    return c;
  }

  let checked: () => void = () => undefined;
  const first = new Promise<void>((resolve) => (checked = resolve));
  let lastResyncMs = 0;
  const resync = async (): Promise<void> => {
    lastResyncMs = Date.now();
    await o.onResync().catch((err: unknown) => o.log.warn({ err }, 'resync from the database failed'));
  };

  const loop = (async () => {
    while (!stop.signal.aborted) {
      try {
        if (!client) {
          const c = await connect();
          if (stop.signal.aborted) {
            await c.end();
            break;
          }
          client = c;
          // Notifications sent while we were not listening are lost: read the state again.
          await resync();
        }
        if (!leader) {
          const { rows } = await client.query<{ ok: boolean }>('SELECT pg_try_advisory_lock($1) AS ok', [
            LEADER_LOCK_KEY,
          ]);
          if (rows[0]?.ok === true && client) {
            leader = true;
            acquired++;
            o.log.info('leadership acquired');
          }
        }
        if (Date.now() - lastResyncMs >= resyncMs) await resync();
      } catch (err: unknown) {
        if (client) drop(client, 'leader check failed', err);
        else o.log.warn({ err }, 'cannot reach the database for leadership; will retry');
      }
      checked();
      await sleep(retryMs, undefined, { signal: stop.signal }).catch(() => undefined /* closing */);
    }
  })();

  let closing: Promise<void> | undefined;
  const close = (): Promise<void> =>
    (closing ??= (async () => {
      stop.abort();
      await loop;
      checked();
      const c = client;
      client = undefined;
      leader = false;
      await c?.end().catch(() => undefined /* already broken */);
      await announcer.end();
    })());

  return {
    isLeader: () => leader,
    firstCheck: () => first,
    async announceRevoked(hostId) {
      try {
        await announcer.query('SELECT pg_notify($1, $2)', [REVOCATION_CHANNEL, hostId]);
      } catch (err: unknown) {
        o.log.warn(
          { err, hostId },
          'cannot announce a revocation; the others pick it up at their next resync',
        );
      }
    },
    metricsLines: () => leaderLines(leader, acquired),
    close,
    [Symbol.asyncDispose]: close,
  };
}

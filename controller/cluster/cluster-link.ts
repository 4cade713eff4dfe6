import { randomUUID } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import pg from 'pg';
import type { Logger } from 'pino';
import { CLUSTER_CHANGE_KINDS, type ClusterChange, type ClusterChangeKind } from '../../protocol/cluster.js';
import type { DatabaseTarget } from '../db/database-target.js';
import { decodeChange, encodeChange, IGNORED_REASONS, type IgnoredReason } from './cluster-change.js';

/**
 * The advisory lock key the leader holds (session level, on the link's own connection):
 * 0x636f7272 is "corr" in ASCII, so no other application's key is likely to collide.
 */
export const LEADER_LOCK_KEY = 0x636f7272;
/**
 * The channel a controller announces its changes to shared state on (payload: a
 * ClusterChange, protocol/cluster.ts), so the others read that entry again at once.
 */
export const CHANGES_CHANNEL = 'corral_changes';
/** How often a follower tries the leader lock, and a dead link reconnects, in ms. */
export const DEFAULT_LEADER_RETRY_MS = 1_000;
/** How often shared state is re-read from the database anyway (a NOTIFY missed while down), in ms. */
export const DEFAULT_RESYNC_MS = 10_000;
const CONNECT_TIMEOUT_MS = 5_000;
/**
 * The link's connection is named this plus the controller's id: the controllers alive are the
 * sessions so named (the same session that holds the leader lock, so a controller counts as
 * alive exactly while it could hold the lock).
 */
const SESSION_PREFIX = 'corral-controller:';
/**
 * Announcements waiting for the notify connection at most; past that one is dropped and
 * counted (`result="dropped"`): the others pick its change up at their next resync.
 */
const MAX_ANNOUNCEMENTS_PENDING = 10_000;

/**
 * What several controllers on one database share beyond the rows: who runs background work,
 * and news of changes to what they keep in memory (pins, open operator connections, webhooks).
 * On SQLite there is only ever one controller: it is always leader and nothing is announced.
 */
export interface ClusterLink extends AsyncDisposable {
  /** This controller process (a new one every start): what it owns carries it (operations). */
  readonly id: string;
  /**
   * Whether this controller runs background work now: it held the lock at its last check and
   * every `whenAcquired` hook has run since it took it.
   */
  isLeader(): boolean;
  /**
   * Runs `hook` every time this controller takes the leader lock, before `isLeader()` turns
   * true; registered while leading, it runs at the next check (leadership waits for it). A hook
   * that throws is logged and run again at the next check, and until it succeeds this
   * controller does not lead. Hooks run one at a time, never concurrently with each other.
   */
  whenAcquired(hook: () => Promise<void>): void;
  /**
   * The ids of the controllers connected to the database now, this one included. On
   * PostgreSQL a controller that lost its link (killed, partitioned) is left out once the
   * server has ended its session. Throws when the database cannot be read.
   */
  liveControllers(): Promise<ReadonlySet<string>>;
  /** Resolves once the first try for the lock has ended (taken or not, or the database unreachable). */
  firstCheck(): Promise<void>;
  /**
   * Tells the other controllers to read this entry again (best effort, after the change has
   * committed; they resync anyway). Never throws.
   */
  announce(change: ClusterChange): Promise<void>;
  /** For /metrics. */
  metricsLines(): string[];
  /** Releases the lock (by closing its connection) and stops. Idempotent. */
  close(): Promise<void>;
}

export interface ClusterLinkOptions {
  readonly database: DatabaseTarget | undefined;
  readonly log: Logger;
  /** Another controller changed this entry (it has committed): read it again. Must not throw. */
  readonly onChange: (change: ClusterChange) => void;
  /** Re-read all shared state (on every (re)connect, and every `resyncMs`). */
  readonly onResync: () => Promise<void>;
  readonly leaderRetryMs?: number;
  readonly resyncMs?: number;
}

export function createClusterLink(o: ClusterLinkOptions): ClusterLink {
  if (o.database?.kind !== 'postgres') return createSoloLink();
  return createPostgresLink(o, o.database.url);
}

/** The only controller there is: it leads from its first check (its hooks run there) until closed. */
function createSoloLink(): ClusterLink {
  const id = randomUUID();
  let closed = false;
  const hooks: (() => Promise<void>)[] = [];
  let ran = 0;
  let running: Promise<void> | undefined;
  /** Runs the hooks not run yet; a failure is thrown to the caller of `firstCheck`. */
  const runHooks = (): Promise<void> =>
    (running ??= (async () => {
      try {
        while (ran < hooks.length) {
          const hook = hooks[ran];
          if (hook) await hook();
          ran++;
        }
      } finally {
        running = undefined;
      }
    })());
  return {
    id,
    isLeader: () => !closed && ran === hooks.length,
    whenAcquired(hook) {
      hooks.push(hook);
    },
    liveControllers: () => Promise.resolve(new Set([id])),
    firstCheck: runHooks,
    announce: () => Promise.resolve(),
    metricsLines: () => leaderLines(!closed, 1),
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
 * partition). The same connection LISTENs for changes. A connection that errors makes this
 * controller a follower at once; the loop reconnects every `leaderRetryMs`.
 */
function createPostgresLink(o: ClusterLinkOptions, url: string): ClusterLink {
  const retryMs = o.leaderRetryMs ?? DEFAULT_LEADER_RETRY_MS;
  const resyncMs = o.resyncMs ?? DEFAULT_RESYNC_MS;
  const id = randomUUID();
  const stop = new AbortController();
  let client: pg.Client | undefined;
  /** The lock is held on `client`. */
  let locked = false;
  /** Hooks are to run before this controller leads (the lock was taken, or a hook was added). */
  let hooksDue = true;
  const hooks: (() => Promise<void>)[] = [];
  let acquired = 0;
  const leading = (): boolean => locked && !hooksDue;
  const announcer = new pg.Pool({
    connectionString: url,
    max: 1,
    connectionTimeoutMillis: CONNECT_TIMEOUT_MS,
    application_name: 'corral-controller-notify',
  });
  announcer.on('error', (err) => o.log.warn({ err }, 'notify connection failed'));
  let announced = 0;
  let announceFailed = 0;
  let announceDropped = 0;
  let announcing = 0;
  const received = new Map<ClusterChangeKind, number>(CLUSTER_CHANGE_KINDS.map((k) => [k, 0]));
  const ignored = new Map<IgnoredReason, number>(IGNORED_REASONS.map((r) => [r, 0]));

  const drop = (c: pg.Client, why: string, err?: unknown): void => {
    if (client !== c) return;
    client = undefined;
    if (locked) o.log.warn({ err, why }, 'leadership lost');
    locked = false;
    c.end().catch(() => undefined /* already broken */);
  };

  async function connect(): Promise<pg.Client> {
    const c = new pg.Client({
      connectionString: url,
      connectionTimeoutMillis: CONNECT_TIMEOUT_MS,
      application_name: SESSION_PREFIX + id,
      keepAlive: true,
    });
    c.on('error', (err) => drop(c, 'connection error', err));
    c.on('end', () => drop(c, 'connection ended'));
    c.on('notification', (n) => {
      if (n.channel !== CHANGES_CHANNEL) return;
      const decoded = decodeChange(n.payload, id);
      if ('ignored' in decoded) {
        ignored.set(decoded.ignored, (ignored.get(decoded.ignored) ?? 0) + 1);
        o.log.debug({ reason: decoded.ignored }, 'cluster notification ignored');
        return;
      }
      if ('own' in decoded) return;
      received.set(decoded.change.kind, (received.get(decoded.change.kind) ?? 0) + 1);
      o.onChange(decoded.change);
    });
    await c.connect();
    await c.query(`LISTEN ${CHANGES_CHANNEL}`);
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
        if (!locked) {
          const { rows } = await client.query<{ ok: boolean }>('SELECT pg_try_advisory_lock($1) AS ok', [
            LEADER_LOCK_KEY,
          ]);
          if (rows[0]?.ok === true && client) {
            locked = true;
            hooksDue = true;
          }
        }
        if (locked && hooksDue) {
          hooksDue = false;
          try {
            for (const hook of hooks) await hook();
          } catch (err: unknown) {
            hooksDue = true;
            o.log.warn({ err }, 'taking over background work failed; will retry before leading');
          }
          if (leading()) {
            acquired++;
            o.log.info({ controllerId: id }, 'leadership acquired');
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
      locked = false;
      await c?.end().catch(() => undefined /* already broken */);
      await announcer.end();
    })());

  return {
    id,
    isLeader: leading,
    whenAcquired(hook) {
      hooks.push(hook);
      hooksDue = true;
    },
    async liveControllers() {
      const { rows } = await announcer.query<{ name: string }>(
        `SELECT application_name AS name FROM pg_stat_activity
          WHERE datname = current_database() AND starts_with(application_name, $1)`,
        [SESSION_PREFIX],
      );
      const live = new Set(rows.map((r) => r.name.slice(SESSION_PREFIX.length)));
      // This controller leads only on its own session, so it is alive while it asks.
      live.add(id);
      return live;
    },
    firstCheck: () => first,
    async announce(change) {
      if (announcing >= MAX_ANNOUNCEMENTS_PENDING) {
        announceDropped++;
        return;
      }
      announcing++;
      try {
        await announcer.query('SELECT pg_notify($1, $2)', [CHANGES_CHANNEL, encodeChange(change, id)]);
        announced++;
      } catch (err: unknown) {
        announceFailed++;
        o.log.warn(
          { err, kind: change.kind, id: change.id },
          'cannot announce a change; the others pick it up at their next resync',
        );
      } finally {
        announcing--;
      }
    },
    metricsLines: () => [
      ...leaderLines(leading(), acquired),
      '# HELP corral_cluster_changes_announced_total Changes this controller told the others of (NOTIFY), by outcome.',
      '# TYPE corral_cluster_changes_announced_total counter',
      `corral_cluster_changes_announced_total{result="sent"} ${announced}`,
      `corral_cluster_changes_announced_total{result="failed"} ${announceFailed}`,
      `corral_cluster_changes_announced_total{result="dropped"} ${announceDropped}`,
      '# HELP corral_cluster_changes_received_total Changes other controllers told this one of, by kind.',
      '# TYPE corral_cluster_changes_received_total counter',
      ...[...received].map(([kind, n]) => `corral_cluster_changes_received_total{kind="${kind}"} ${n}`),
      '# HELP corral_cluster_changes_ignored_total Notifications dropped unread, by reason.',
      '# TYPE corral_cluster_changes_ignored_total counter',
      ...[...ignored].map(([reason, n]) => `corral_cluster_changes_ignored_total{reason="${reason}"} ${n}`),
    ],
    close,
    [Symbol.asyncDispose]: close,
  };
}

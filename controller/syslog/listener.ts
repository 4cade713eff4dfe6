import type { AddressInfo, Socket } from 'node:net';
import { createServer, type Server, type TLSSocket } from 'node:tls';
import type { Logger } from 'pino';
import { peerIdentity } from '../../pki/identity.js';
import { HOST_ID_RE, type Role } from '../../pki/roles.js';
import { serverTlsOptions, type TlsMaterial } from '../../pki/tls-options.js';
import { encodeCorralControlFrame } from '../../protocol/syslog-corral.js';
import { DEFAULT_SYSLOG_MAX_FRAME_BYTES } from '../../protocol/syslog-frame.js';
import { SyslogConnection, type ConnectionEvents } from './connection.js';
import type { PinLookup, PinnedHost } from './pin-lookup.js';
import { CloseReason, RefuseReason, WARN_CLOSE_REASONS } from './reasons.js';
import type { HostWriter } from './host-writer.js';
import { zeroCounters } from './ingest-recovery.js';
import { openIngestStore, type IngestStore } from './ingest-store.js';
import type { RetentionPolicy } from './host-files.js';

export const DEFAULT_SYSLOG_MAX_CONNECTIONS_PER_HOST = 8;
export const DEFAULT_SYSLOG_MAX_CONNECTIONS = 4096;
export const DEFAULT_SYSLOG_IDLE_TIMEOUT_MS = 10 * 60_000;
export const DEFAULT_SYSLOG_HANDSHAKE_TIMEOUT_MS = 10_000;
/**
 * Connections the kernel queues before they are accepted (capped by net.core.somaxconn): a
 * fleet's forwarders reconnect at once after a restart, and Node's default of 511 overflows.
 */
export const SYSLOG_LISTEN_BACKLOG = 4096;
/** Bytes a connection may have queued for the disk before its socket stops being read. */
export const DEFAULT_SYSLOG_MAX_PENDING_BYTES = 8 * 1024 * 1024;
/**
 * Bytes all connections together may have queued for the disk: each connection may queue an
 * even share of it (within DEFAULT_SYSLOG_MAX_PENDING_BYTES, and at least
 * SYSLOG_MIN_PENDING_SHARE_BYTES), then its socket is not read until its commits catch up. So
 * the listener holds about this much whatever the number of senders, and a sender whose lines
 * were read first cannot fill the queue ahead of the others: what each host has waiting is
 * about the same, and commits take hosts in turn.
 */
export const DEFAULT_SYSLOG_MAX_TOTAL_PENDING_BYTES = 128 * 1024 * 1024;
/** The least share of a connection, however many there are: two of a forwarder's batches. */
export const SYSLOG_MIN_PENDING_SHARE_BYTES = 512 * 1024;
/** Worker forwarders (and standard senders on workers) present the agent certificate. */
export const DEFAULT_SYSLOG_SENDER_ROLES: readonly Role[] = ['agent'];

export interface SyslogListenerOptions {
  /** The controller's server identity and the CA client certificates must chain to. */
  readonly tls: TlsMaterial;
  /** Where the hosts' ingest files (host-files.ts) and `<hostId>.state` live (created 0750). */
  readonly logDir: string;
  readonly pins: PinLookup;
  readonly log: Logger;
  /** Certificate roles that may send logs, besides being pinned (default: the worker's agent). */
  readonly roles?: readonly Role[];
  readonly maxFrameBytes?: number | undefined;
  readonly maxConnectionsPerHost?: number | undefined;
  readonly maxConnections?: number;
  readonly idleTimeoutMs?: number | undefined;
  readonly handshakeTimeoutMs?: number;
  readonly maxPendingBytes?: number;
  /** Queued-but-uncommitted bytes of all connections, shared evenly among them. */
  readonly maxTotalPendingBytes?: number;
  readonly clock?: () => number;
  /** Group commits across hosts (ingest-store.ts): gathering time, size limit, journal file size. */
  readonly commitWindowMs?: number | undefined;
  readonly maxGroupBytes?: number | undefined;
  readonly journalBytes?: number | undefined;
  /** Rotation and retention of the hosts' ingest files (ingest-store.ts, host-files.ts). */
  readonly maxFileBytes?: number | undefined;
  readonly retention?: RetentionPolicy | undefined;
  /** Internal (benchmark side-by-side): one host per commit instead of groups (ingest-store.ts). */
  readonly perHostCommits?: boolean | undefined;
}

export interface SyslogListenerStats {
  readonly connectionsOpen: number;
  readonly connectionsAccepted: number;
  readonly refused: Readonly<Record<RefuseReason, number>>;
  readonly closed: Readonly<Record<CloseReason, number>>;
  readonly linesIngested: number;
  readonly bytesIngested: number;
  /** Lines a Corral forwarder sent again that were already written, and dropped. */
  readonly linesDuplicate: number;
  /**
   * Log file generations forwarders reported as vanished before they were read (deleted or
   * truncated away), and the unread bytes they knew of: lines that never reached the listener.
   */
  readonly generationsLost: number;
  readonly bytesLost: number;
  /** Group commits made durable: one journal fdatasync each, whatever the number of hosts in it. */
  readonly commits: number;
  /** Hosts' parts in those commits: above `commits` when commits carried several hosts. */
  readonly hostParts: number;
  /** Every fdatasync of the ingest: commits, checkpoints of host files and states, recovery. */
  readonly fdatasyncs: number;
  /** Journal files checkpointed and reused. */
  readonly checkpoints: number;
  /** Times commits waited for a checkpoint (the other journal file filled up first). */
  readonly checkpointWaits: number;
  /** Hosts' ingest files rotated. */
  readonly rotations: number;
}

export interface SyslogListener {
  listen(host: string, port: number): Promise<AddressInfo>;
  address(): AddressInfo | undefined;
  /** Closes every live connection of a host; returns how many there were. */
  dropHost(hostId: string): number;
  stats(): SyslogListenerStats;
  /** Stops accepting, closes connections, commits what was received. Idempotent. */
  close(): Promise<void>;
  [Symbol.asyncDispose](): Promise<void>;
}

/**
 * The bytes one of `connections` may have queued for the disk: an even share of `totalBytes`,
 * at least SYSLOG_MIN_PENDING_SHARE_BYTES, at most `perConnectionBytes`.
 */
export function pendingShare(connections: number, totalBytes: number, perConnectionBytes: number): number {
  const even = Math.floor(totalBytes / Math.max(1, connections));
  return Math.min(perConnectionBytes, Math.max(SYSLOG_MIN_PENDING_SHARE_BYTES, even));
}

function zeroCounts<K extends string>(keys: Record<string, K>): Record<K, number> {
  return Object.fromEntries(Object.values(keys).map((k) => [k, 0])) as Record<K, number>;
}

/**
 * The controller's syslog-over-TLS listener. Every connection must present a certificate of
 * our CA whose fingerprint is pinned to an active host (checked on each new connection);
 * its lines go to that host's ingest file, in order, whatever the messages claim.
 */
export function createSyslogListener(options: SyslogListenerOptions): SyslogListener {
  const log = options.log;
  const clock = options.clock ?? Date.now;
  const maxFrameBytes = options.maxFrameBytes ?? DEFAULT_SYSLOG_MAX_FRAME_BYTES;
  const maxPerHost = options.maxConnectionsPerHost ?? DEFAULT_SYSLOG_MAX_CONNECTIONS_PER_HOST;
  const maxConnections = options.maxConnections ?? DEFAULT_SYSLOG_MAX_CONNECTIONS;
  const idleTimeoutMs = options.idleTimeoutMs ?? DEFAULT_SYSLOG_IDLE_TIMEOUT_MS;
  const maxPendingBytes = options.maxPendingBytes ?? DEFAULT_SYSLOG_MAX_PENDING_BYTES;
  const maxTotalPendingBytes = options.maxTotalPendingBytes ?? DEFAULT_SYSLOG_MAX_TOTAL_PENDING_BYTES;
  const roles = options.roles ?? DEFAULT_SYSLOG_SENDER_ROLES;

  const counters = zeroCounters();
  let store: Promise<IngestStore> | undefined;
  /** The ingest store, opened (recovering the journal) on first use and again after a failure. */
  async function ingest(): Promise<IngestStore> {
    for (;;) {
      const current = (store ??= openIngestStore({
        logDir: options.logDir,
        log,
        clock,
        counters,
        commitWindowMs: options.commitWindowMs,
        maxGroupBytes: options.maxGroupBytes,
        journalBytes: options.journalBytes,
        maxFileBytes: options.maxFileBytes,
        retention: options.retention,
        perHostCommits: options.perHostCommits,
      }));
      let opened: IngestStore;
      try {
        opened = await current;
      } catch (e: unknown) {
        if (store === current) store = undefined;
        throw e;
      }
      if (!opened.failed) return opened;
      if (store === current) store = undefined;
      await opened.close();
    }
  }
  const byHost = new Map<string, Set<TLSSocket>>();
  const connections = new Map<TLSSocket, SyslogConnection>();
  const streams = new Map<string, SyslogConnection>();
  const refused = zeroCounts(RefuseReason);
  const closedCounts = zeroCounts(CloseReason);
  const totals = { accepted: 0, lines: 0, bytes: 0, duplicates: 0, generationsLost: 0, bytesLost: 0 };
  let closing: Promise<void> | undefined;
  /** A connection's share of the pending budget, as things stand (connection.ts hold/release). */
  const pendingLimit = (): number => pendingShare(connections.size, maxTotalPendingBytes, maxPendingBytes);

  const server: Server = createServer({
    ...serverTlsOptions(options.tls),
    handshakeTimeout: options.handshakeTimeoutMs ?? DEFAULT_SYSLOG_HANDSHAKE_TIMEOUT_MS,
  });

  // Every TCP connection, so close() also ends those still in their TLS handshake.
  const sockets = new Set<Socket>();
  server.on('connection', (socket: Socket) => {
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
  });

  function refuse(socket: TLSSocket, reason: RefuseReason, fields: Record<string, unknown> = {}): void {
    refused[reason]++;
    socket.destroy();
    log.warn({ reason, remoteAddress: socket.remoteAddress, ...fields }, 'syslog connection refused');
  }

  const streamKey = (conn: SyslogConnection, id: string): string => `${conn.host.hostId}/${id}`;

  const events: ConnectionEvents = {
    claimStream(conn, id) {
      const key = streamKey(conn, id);
      const previous = streams.get(key);
      streams.set(key, conn);
      if (previous && previous !== conn) previous.close(CloseReason.STREAM_TAKEN, id);
    },
    releaseStream(conn, id) {
      const key = streamKey(conn, id);
      if (streams.get(key) === conn) streams.delete(key);
    },
    ingested(lines, bytes, duplicates) {
      totals.lines += lines;
      totals.bytes += bytes;
      totals.duplicates += duplicates;
    },
    // Skipped empty lines leave small gaps; a large one means the listener lost its state.
    gap(conn, streamId, from, to) {
      log.debug(
        { hostId: conn.host.hostId, streamId, from, to },
        'syslog stream resumed past the last written position',
      );
    },
    lost(conn, slot, streamId, bytes, logIt) {
      totals.generationsLost++;
      totals.bytesLost += bytes;
      if (!logIt) return;
      log.warn(
        { hostId: conn.host.hostId, slot, streamId, bytes, generationsLost: totals.generationsLost },
        'a forwarder reports a log generation that vanished before it was read',
      );
    },
    closed(conn, reason, detail) {
      closedCounts[reason]++;
      const fields = { hostId: conn.host.hostId, remoteAddress: conn.remoteAddress, reason, detail };
      if (WARN_CLOSE_REASONS.has(reason)) log.warn(fields, 'syslog connection closed');
      else if (reason === CloseReason.PEER_CLOSED || reason === CloseReason.LISTENER_CLOSING) {
        log.debug(fields, 'syslog connection closed');
      } else log.info(fields, 'syslog connection closed');
    },
  };

  function untrack(socket: TLSSocket, hostId: string): void {
    const set = byHost.get(hostId);
    set?.delete(socket);
    if (set?.size === 0) byHost.delete(hostId);
    const conn = connections.get(socket);
    if (conn && connections.delete(socket)) conn.writer.release();
  }

  async function attach(socket: TLSSocket, host: PinnedHost): Promise<void> {
    let writer: HostWriter;
    try {
      writer = await (await ingest()).acquire(host.hostId, host.hostName);
    } catch (e: unknown) {
      log.error({ err: e, hostId: host.hostId }, 'syslog ingest file unavailable');
      untrack(socket, host.hostId);
      refuse(socket, RefuseReason.INGEST_UNAVAILABLE, { hostId: host.hostId });
      return;
    }
    if (socket.destroyed || closing) {
      writer.release();
      untrack(socket, host.hostId);
      return;
    }
    const conn = new SyslogConnection({
      socket,
      host,
      writer,
      maxFrameBytes,
      idleTimeoutMs,
      pendingLimit,
      events,
    });
    connections.set(socket, conn);
    socket.setNoDelay(true);
    socket.once('close', () => untrack(socket, host.hostId));
    conn.start();
    log.debug({ hostId: host.hostId, remoteAddress: socket.remoteAddress }, 'syslog connection accepted');
  }

  server.on('secureConnection', (socket: TLSSocket) => {
    socket.pause();
    socket.on('error', () => undefined /* reported by the connection, or the socket is being refused */);
    if (closing) return refuse(socket, RefuseReason.LISTENER_CLOSING);
    const identity = peerIdentity(socket);
    if (!identity) return refuse(socket, RefuseReason.NO_CERTIFICATE);
    if (identity.role === undefined || !roles.includes(identity.role)) {
      return refuse(socket, RefuseReason.WRONG_ROLE, {
        role: identity.role,
        fingerprint: identity.fingerprint,
      });
    }
    const host = options.pins.lookup(identity.fingerprint);
    const gone = host ? undefined : options.pins.lookupDecommissioned?.(identity.fingerprint);
    if (gone && (identity.hostId === undefined || identity.hostId === gone.hostId)) {
      // Told only to this host's own certificate (TLS proved the key); others get a plain close.
      refused[RefuseReason.DECOMMISSIONED]++;
      log.info({ hostId: gone.hostId, hostName: gone.hostName }, 'told a decommissioned host so');
      socket.end(encodeCorralControlFrame({ kind: 'decommissioned' }));
      socket.setTimeout(5_000, () => socket.destroy());
      return;
    }
    if (!host || !HOST_ID_RE.test(host.hostId)) {
      return refuse(socket, RefuseReason.UNPINNED, { fingerprint: identity.fingerprint });
    }
    if (identity.hostId !== undefined && identity.hostId !== host.hostId) {
      return refuse(socket, RefuseReason.HOST_MISMATCH, { hostId: host.hostId, certHostId: identity.hostId });
    }
    const set = byHost.get(host.hostId) ?? new Set<TLSSocket>();
    if (set.size >= maxPerHost || connections.size >= maxConnections) {
      return refuse(socket, RefuseReason.TOO_MANY_CONNECTIONS, { hostId: host.hostId });
    }
    set.add(socket);
    byHost.set(host.hostId, set);
    totals.accepted++;
    void attach(socket, host);
  });

  server.on('tlsClientError', (err: Error & { code?: string }, socket: TLSSocket) => {
    refused[RefuseReason.HANDSHAKE]++;
    log.warn(
      {
        reason: RefuseReason.HANDSHAKE,
        code: err.code,
        detail: err.message,
        remoteAddress: socket.remoteAddress,
      },
      'syslog connection refused',
    );
  });

  const unsubscribe = options.pins.onRevoked((hostId) => {
    const dropped = dropHost(hostId, CloseReason.HOST_REVOKED);
    if (dropped > 0) log.info({ hostId, dropped }, 'syslog connections of a revoked host closed');
  });

  function dropHost(hostId: string, reason: CloseReason = CloseReason.HOST_REVOKED): number {
    const sockets = [...(byHost.get(hostId) ?? [])];
    for (const socket of sockets) {
      const conn = connections.get(socket);
      if (conn) conn.close(reason);
      else socket.destroy();
    }
    return sockets.length;
  }

  async function close(): Promise<void> {
    closing ??= (async () => {
      unsubscribe();
      const stopped = new Promise<void>((resolve) => server.close(() => resolve()));
      for (const hostId of [...byHost.keys()]) dropHost(hostId, CloseReason.LISTENER_CLOSING);
      for (const socket of sockets) socket.destroy();
      await stopped;
      const current = store;
      store = undefined;
      await current?.then(
        (s) => s.close(),
        () => undefined /* never opened: nothing to commit */,
      );
    })();
    return closing;
  }

  return {
    async listen(host, port) {
      // Recovery runs before the first connection; a failure here is retried on connect.
      await ingest().catch((e: unknown) => log.error({ err: e }, 'syslog ingest unavailable'));
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen({ host, port, backlog: SYSLOG_LISTEN_BACKLOG }, () => {
          server.off('error', reject);
          resolve();
        });
      });
      return server.address() as AddressInfo;
    },
    address() {
      const addr = server.address();
      return addr && typeof addr === 'object' ? addr : undefined;
    },
    dropHost: (hostId) => dropHost(hostId),
    stats() {
      return {
        connectionsOpen: connections.size,
        connectionsAccepted: totals.accepted,
        refused: { ...refused },
        closed: { ...closedCounts },
        linesIngested: totals.lines,
        bytesIngested: totals.bytes,
        linesDuplicate: totals.duplicates,
        generationsLost: totals.generationsLost,
        bytesLost: totals.bytesLost,
        commits: counters.commits,
        hostParts: counters.hostParts,
        fdatasyncs: counters.fdatasyncs,
        checkpoints: counters.checkpoints,
        checkpointWaits: counters.checkpointWaits,
        rotations: counters.rotations,
      };
    },
    close,
    [Symbol.asyncDispose]: close,
  };
}

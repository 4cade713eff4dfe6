import { resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Logger } from 'pino';
import type { TlsMaterial } from '../pki/tls-options.js';
import { backoffDelayMs } from '../kit/backoff.js';
import { formatHostPort } from '../kit/host-port.js';
import { MAX_SESSION_STREAMS } from '../protocol/syslog-corral.js';
import { DEFAULT_SYSLOG_MAX_FRAME_BYTES } from '../protocol/syslog-frame.js';
import { CorralError, ErrorCode } from '../protocol/errors.js';
import { isFatalForwarderError } from './errors.js';
import { FileTail } from './file-tail.js';
import type { PositionStore } from './position-store.js';
import { markerPath } from './store-marker.js';
import { pump, ResponseTimeoutError, type Pump, type PumpOptions, type PumpStats } from './pump.js';
import { Session } from './session.js';

export type ForwarderMode = 'corral' | 'rfc5425';
export const FORWARDER_MODES: readonly ForwarderMode[] = ['corral', 'rfc5425'];

/** A syslog listener to dial. */
export interface SyslogTarget {
  readonly host: string;
  readonly port: number;
}

export interface ForwarderOptions {
  /** The worker's agent identity and our CA. */
  readonly tls: TlsMaterial;
  /**
   * The listener, or the listeners of several controllers to fail over along (in order), or
   * a function giving them, asked again before every connect (the agent's list may change).
   * Each gets the same TLS checks.
   */
  readonly controller:
    | SyslogTarget
    | readonly SyslogTarget[]
    | (() => readonly SyslogTarget[] | Promise<readonly SyslogTarget[]>);
  readonly files: readonly string[];
  readonly mode: ForwarderMode;
  readonly store: PositionStore;
  readonly log: Logger;
  readonly clock?: () => number;
  readonly random?: () => number;
  /** How often idle files are looked at again, in ms. */
  readonly pollIntervalMs?: number;
  /** How long a rotated-away file must stay unchanged before it is left, in ms. */
  readonly rotateGraceMs?: number;
  /** Bytes sent but not yet acknowledged, across files (corral mode). */
  readonly windowBytes?: number;
  readonly readChunkBytes?: number;
  /** Largest message sent; longer lines go in pieces. Keep it within the listener's frame cap. */
  readonly maxMessageBytes?: number;
  readonly backoffBaseMs?: number;
  readonly backoffCapMs?: number;
  readonly connectTimeoutMs?: number;
  /** How long to wait for an `at` or for acks of data in flight before reconnecting, in ms. */
  readonly responseTimeoutMs?: number;
  /** How long a stop waits for acks of lines already sent, in ms. */
  readonly drainTimeoutMs?: number;
}

export interface ForwarderStats extends PumpStats {
  readonly connected: boolean;
  /** The listener sent to now, or last (`host:port`). */
  readonly controller: string | undefined;
  readonly sessions: number;
  readonly connectFailures: number;
  /** Moves to another controller's listener than the one before. */
  readonly failovers: number;
  /**
   * Bytes a session left sent but unacknowledged when it ended, then sent to another
   * controller: the most a failover can repeat (the old controller may have written them
   * before it died). Exactly once holds per controller; this is the window across them.
   */
  readonly failoverUnackedBytes: number;
  /** Generations found vanished before they were read, since this forwarder started. */
  readonly generationsLost: number;
  readonly files: readonly {
    path: string;
    streamId: string | undefined;
    acked: number;
    inFlight: number;
    generationsLost: number;
  }[];
}

/**
 * Why `run` ended: the signal (`stopped`), or the listener said this host is decommissioned
 * (`decommissioned`: told only to this host's own certificate; there is nothing left to ship
 * to, so the forwarder does not reconnect).
 */
export type ForwarderEnd = 'stopped' | 'decommissioned';

export interface Forwarder {
  /**
   * Ships lines until `signal` aborts; reconnects with capped, jittered backoff. Rejects with
   * a ForwarderError (CORRAL_ERR_POSITIONS_LOST, CORRAL_ERR_POSITIONS_DAMAGED) when it must
   * not go on: the positions are gone and cannot be recovered, or cannot be stored.
   */
  run(signal: AbortSignal): Promise<ForwarderEnd>;
  stats(): ForwarderStats;
  /** Saves acknowledged positions and closes the files (not the store, which the caller owns). */
  close(): Promise<void>;
  [Symbol.asyncDispose](): Promise<void>;
}

/**
 * The log forwarder: tails files and ships each line as an octet-counted frame over mutual
 * TLS. In `corral` mode, positions move only on the listener's acks (exactly once with
 * Corral's listener); in `rfc5425` mode, once a write is flushed (at least once, any receiver).
 * Memory is bounded by the read chunk and the in-flight window, however far behind it is.
 */
export function createForwarder(options: ForwarderOptions): Forwarder {
  if (options.files.length === 0) throw new RangeError('the forwarder needs at least one file');
  if (options.files.length > MAX_SESSION_STREAMS) {
    throw new RangeError(`the forwarder follows at most ${MAX_SESSION_STREAMS} files`);
  }
  const log = options.log;
  const clock = options.clock ?? Date.now;
  const maxMessageBytes = options.maxMessageBytes ?? DEFAULT_SYSLOG_MAX_FRAME_BYTES;
  const readChunkBytes = Math.max(options.readChunkBytes ?? 1024 * 1024, maxMessageBytes + 1);
  const tails = options.files.map(
    (path) =>
      new FileTail({
        path: resolve(path),
        store: options.store,
        log,
        corral: options.mode === 'corral',
        readChunkBytes,
        rotateGraceMs: options.rotateGraceMs ?? 1000,
        clock,
      }),
  );
  const pumpOptions: PumpOptions = {
    corral: options.mode === 'corral',
    maxMessageBytes,
    maxBatchBytes: 256 * 1024,
    windowBytes: options.windowBytes ?? 4 * 1024 * 1024,
    pollIntervalMs: options.pollIntervalMs ?? 250,
    responseTimeoutMs: options.responseTimeoutMs ?? 30_000,
    drainTimeoutMs: options.drainTimeoutMs ?? 2000,
    clock,
    log,
    recovered: async () => {
      if (options.store.recovery() !== undefined && tails.every((t) => t.needsRecovery === undefined)) {
        await options.store.finishRecovery();
        log.info({ positions: options.store.file }, 'every file placed: recovery of positions finished');
      }
    },
  };
  const totals = {
    linesSent: 0,
    bytesSent: 0,
    sessions: 0,
    connectFailures: 0,
    failovers: 0,
    failoverUnackedBytes: 0,
  };
  const listTargets = (): readonly SyslogTarget[] | Promise<readonly SyslogTarget[]> => {
    const c = options.controller;
    if (typeof c === 'function') return c();
    return 'host' in c ? [c] : c;
  };
  const nameOf = (t: SyslogTarget): string => formatHostPort(t.host, t.port);
  let targets: SyslogTarget[] = [];
  /** Index in `targets` of the listener to dial next. */
  let at = 0;
  /** The listener of the last session, and what it left unacknowledged when it ended. */
  let last: { readonly name: string; readonly unackedBytes: number } | undefined;
  /** Listeners tried in a row without a session that moved anything. */
  let misses = 0;
  /** The listener of the session open now. */
  let connectedTo: string | undefined;

  const targetName = (): string | undefined => {
    const t = targets[at];
    return t && nameOf(t);
  };

  /** Takes the current list, keeping the listener dialled next when it is still in it. */
  async function refreshTargets(): Promise<void> {
    let list: readonly SyslogTarget[];
    try {
      list = await listTargets();
    } catch (e: unknown) {
      log.warn({ err: e }, 'the syslog addresses could not be read; keeping the ones before');
      return;
    }
    const seen = new Set<string>();
    const next = list.filter((t) => !seen.has(nameOf(t)) && (seen.add(nameOf(t)), true));
    if (next.length === 0) return;
    const current = targets[at];
    const i = current === undefined ? -1 : next.findIndex((t) => nameOf(t) === nameOf(current));
    targets = next;
    at = Math.max(0, i);
  }

  /**
   * After a failed connect or a session that moved nothing: the next listener. True when a
   * whole round of them has failed, so the caller backs off before the next one.
   */
  function moveOn(): boolean {
    at = (at + 1) % Math.max(1, targets.length);
    misses++;
    if (misses < targets.length) return false;
    misses = 0;
    return true;
  }
  let session: Session | undefined;
  let current: Pump | undefined;
  let initialized: Promise<void> | undefined;
  let closed: Promise<void> | undefined;

  /** The wait before try number `n` after failures. */
  const backoffMs = (n: number): number =>
    backoffDelayMs(n, options.backoffBaseMs ?? 200, options.backoffCapMs ?? 30_000, options.random);

  async function run(signal: AbortSignal): Promise<ForwarderEnd> {
    const pause = (ms: number): Promise<void> =>
      sleep(ms, undefined, { signal }).catch(() => undefined /* aborted: the loop ends */);
    await (initialized ??= (async () => {
      const opening = options.store.opening;
      if (opening.state === 'lost') {
        log.error(
          {
            positions: options.store.file,
            marker: markerPath(options.store.file),
            reason: opening.reason,
            detail: opening.detail,
            movedTo: opening.movedTo,
          },
          options.mode === 'corral'
            ? 'positions database lost although this forwarder has shipped before: asking the listener where each file stands'
            : 'positions database lost although this forwarder has shipped before',
        );
      }
      for (const tail of tails) await tail.init();
      await pumpOptions.recovered();
    })());
    let fatal: Error | undefined;
    let decommissioned = false;
    let attempt = 0;
    while (!signal.aborted) {
      try {
        for (const tail of tails) await tail.discover();
      } catch (e: unknown) {
        if (isFatalForwarderError(e)) {
          fatal = e;
          break;
        }
        log.warn({ err: e }, 'looking at the log files failed');
      }
      await refreshTargets();
      const target = targets[at];
      if (target === undefined) {
        // Only when the very first lookup gave nothing: ask again after a backoff.
        log.warn('no syslog address to send to');
        await pause(backoffMs(attempt++));
        continue;
      }
      const controller = nameOf(target);
      try {
        session = await Session.open(
          {
            tls: options.tls,
            host: target.host,
            port: target.port,
            connectTimeoutMs: options.connectTimeoutMs ?? 10_000,
            onControl: (msg) => {
              if (msg.kind !== 'decommissioned') return current?.onControl(msg);
              decommissioned = true;
              // Not a fatal code (isFatalForwarderError): this ends the session only,
              // and the loop then stops because `decommissioned` is set.
              session?.destroy(new CorralError(ErrorCode.CLOSED, 'this host is decommissioned'));
            },
          },
          signal,
        );
      } catch (e: unknown) {
        if (signal.aborted) break;
        totals.connectFailures++;
        const roundFailed = moveOn();
        if (!roundFailed) {
          log.warn(
            { err: e, controller, next: nameOf(targets[at] ?? target) },
            'syslog connect failed; trying the next controller',
          );
          continue;
        }
        const delayMs = backoffMs(attempt++);
        log.warn({ err: e, delayMs, controller }, 'syslog connect failed');
        await pause(delayMs);
        continue;
      }
      totals.sessions++;
      if (last !== undefined && last.name !== controller) {
        totals.failovers++;
        totals.failoverUnackedBytes += last.unackedBytes;
        log.warn(
          {
            from: last.name,
            controller,
            unackedBytes: last.unackedBytes,
            failovers: totals.failovers,
            failoverUnackedBytes: totals.failoverUnackedBytes,
          },
          'syslog failed over to another controller; lines the previous one never acknowledged are sent again',
        );
      }
      connectedTo = controller;
      log.info({ controller, mode: options.mode }, 'syslog session open');
      const active = pump(session, tails, pumpOptions);
      current = active;
      let progressed = false;
      let unanswered = false;
      try {
        progressed = await active.run(signal);
      } catch (e: unknown) {
        progressed = active.progressed;
        unanswered = e instanceof ResponseTimeoutError;
        if (isFatalForwarderError(e)) fatal = e;
        else if (!signal.aborted && !decommissioned) log.warn({ err: e }, 'syslog session ended');
      } finally {
        session.destroy();
        session = undefined;
        current = undefined;
        connectedTo = undefined;
        last = { name: controller, unackedBytes: tails.reduce((sum, t) => sum + t.inFlight, 0) };
        totals.linesSent += active.stats.linesSent;
        totals.bytesSent += active.stats.bytesSent;
      }
      if (fatal !== undefined || signal.aborted || decommissioned) break;
      // A listener that stopped answering is left for the next; one whose connection merely
      // ended is dialled again (a refused connect then moves on).
      if (progressed) {
        misses = 0;
        attempt = 0;
      } else if (!unanswered) {
        attempt++;
      } else if (!moveOn()) {
        continue;
      } else {
        attempt++;
      }
      await pause(backoffMs(attempt));
    }
    for (const tail of tails) await tail.flush();
    if (fatal !== undefined) throw fatal;
    return decommissioned ? 'decommissioned' : 'stopped';
  }

  async function close(): Promise<void> {
    closed ??= (async () => {
      session?.destroy();
      for (const tail of tails) await tail.close();
    })();
    return closed;
  }

  return {
    run,
    stats: () => ({
      connected: session?.isOpen ?? false,
      controller: connectedTo ?? last?.name ?? targetName(),
      sessions: totals.sessions,
      connectFailures: totals.connectFailures,
      failovers: totals.failovers,
      failoverUnackedBytes: totals.failoverUnackedBytes,
      linesSent: totals.linesSent + (current?.stats.linesSent ?? 0),
      bytesSent: totals.bytesSent + (current?.stats.bytesSent ?? 0),
      generationsLost: tails.reduce((sum, t) => sum + t.lostGenerations, 0),
      files: tails.map((t) => ({
        path: t.path,
        streamId: t.streamId,
        acked: t.acked,
        inFlight: t.inFlight,
        generationsLost: t.lostGenerations,
      })),
    }),
    close,
    [Symbol.asyncDispose]: close,
  };
}

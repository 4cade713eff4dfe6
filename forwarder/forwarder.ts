import { resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Logger } from 'pino';
import type { TlsMaterial } from '../pki/tls-options.js';
import { backoffDelayMs } from '../kit/backoff.js';
import { MAX_SESSION_STREAMS } from '../protocol/syslog-corral.js';
import { DEFAULT_SYSLOG_MAX_FRAME_BYTES } from '../protocol/syslog-frame.js';
import { CorralError, ErrorCode } from '../protocol/errors.js';
import { isFatalForwarderError } from './errors.js';
import { FileTail } from './file-tail.js';
import type { PositionStore } from './position-store.js';
import { markerPath } from './store-marker.js';
import { pump, type Pump, type PumpOptions, type PumpStats } from './pump.js';
import { Session } from './session.js';

export type ForwarderMode = 'corral' | 'rfc5425';
export const FORWARDER_MODES: readonly ForwarderMode[] = ['corral', 'rfc5425'];

export interface ForwarderOptions {
  /** The worker's agent identity and our CA. */
  readonly tls: TlsMaterial;
  readonly controller: { readonly host: string; readonly port: number };
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
  readonly sessions: number;
  readonly connectFailures: number;
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
  const totals = { linesSent: 0, bytesSent: 0, sessions: 0, connectFailures: 0 };
  let session: Session | undefined;
  let current: Pump | undefined;
  let initialized: Promise<void> | undefined;
  let closed: Promise<void> | undefined;

  async function run(signal: AbortSignal): Promise<ForwarderEnd> {
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
      try {
        session = await Session.open(
          {
            tls: options.tls,
            host: options.controller.host,
            port: options.controller.port,
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
        const delayMs = backoffDelayMs(
          attempt++,
          options.backoffBaseMs ?? 200,
          options.backoffCapMs ?? 30_000,
          options.random,
        );
        log.warn({ err: e, delayMs, controller: options.controller }, 'syslog connect failed');
        await sleep(delayMs, undefined, { signal }).catch(() => undefined /* aborted: the loop ends */);
        continue;
      }
      totals.sessions++;
      log.info({ controller: options.controller, mode: options.mode }, 'syslog session open');
      const active = pump(session, tails, pumpOptions);
      current = active;
      let progressed = false;
      try {
        progressed = await active.run(signal);
      } catch (e: unknown) {
        progressed = active.progressed;
        if (isFatalForwarderError(e)) fatal = e;
        else if (!signal.aborted && !decommissioned) log.warn({ err: e }, 'syslog session ended');
      } finally {
        session.destroy();
        session = undefined;
        current = undefined;
        totals.linesSent += active.stats.linesSent;
        totals.bytesSent += active.stats.bytesSent;
      }
      if (fatal !== undefined || signal.aborted || decommissioned) break;
      attempt = progressed ? 0 : attempt + 1;
      const delayMs = backoffDelayMs(
        attempt,
        options.backoffBaseMs ?? 200,
        options.backoffCapMs ?? 30_000,
        options.random,
      );
      await sleep(delayMs, undefined, { signal }).catch(() => undefined /* aborted: the loop ends */);
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
      sessions: totals.sessions,
      connectFailures: totals.connectFailures,
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

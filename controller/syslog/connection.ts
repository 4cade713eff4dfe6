import type { TLSSocket } from 'node:tls';
import {
  CorralProtocolError,
  encodeCorralControlFrame,
  isCorralControl,
  parseCorralControl,
  type CorralControl,
} from '../../protocol/syslog-corral.js';
import { FrameError, FrameParser } from '../../protocol/syslog-frame.js';
import { ErrorCode } from '../../protocol/errors.js';
import { BatchAssembler } from './batch-assembler.js';
import type { HostWriter } from './host-writer.js';
import type { PinnedHost } from './pin-lookup.js';
import { PlainAssembler } from './plain-assembler.js';
import { CloseReason } from './reasons.js';

/** What a connection reports back to its listener. */
export interface ConnectionEvents {
  /** Makes `conn` the only connection of its host carrying `streamId` (closing any other). */
  claimStream(conn: SyslogConnection, streamId: string): void;
  releaseStream(conn: SyslogConnection, streamId: string): void;
  ingested(lines: number, bytes: number, duplicates: number): void;
  gap(conn: SyslogConnection, streamId: string, from: number, to: number): void;
  /**
   * The forwarder reports a generation of one of its files that vanished before it was read;
   * `log` is false once the connection has reported more than a few (they are still counted).
   */
  lost(conn: SyslogConnection, slot: number, streamId: string, bytes: number, log: boolean): void;
  closed(conn: SyslogConnection, reason: CloseReason, detail: string | undefined): void;
}

export interface ConnectionOptions {
  readonly socket: TLSSocket;
  readonly host: PinnedHost;
  readonly writer: HostWriter;
  readonly maxFrameBytes: number;
  readonly idleTimeoutMs: number;
  /**
   * Queued-but-uncommitted bytes above which the socket stops being read, asked at each
   * batch and commit: the listener's share of its budget for this connection (listener.ts).
   */
  readonly pendingLimit: () => number;
  readonly events: ConnectionEvents;
}

type Mode = 'unknown' | 'corral' | 'plain';

/** `lost` reports of one connection that are logged; later ones are only counted. */
const LOGGED_LOST_REPORTS = 16;

/**
 * One accepted, pinned connection. Its first frame decides the mode: a Corral control frame
 * starts an exactly-once session (protocol/syslog-corral.ts), anything else makes it a
 * standard RFC 5425 sender. Any framing or protocol error closes this connection only.
 */
export class SyslogConnection {
  readonly host: PinnedHost;
  private readonly socket: TLSSocket;
  readonly writer: HostWriter;
  private readonly events: ConnectionEvents;
  private readonly parser: FrameParser;
  private readonly plain = new PlainAssembler();
  private readonly pendingLimit: () => number;
  private mode: Mode = 'unknown';
  private readonly slots: (string | undefined)[] = [];
  private batch: BatchAssembler | undefined;
  private pendingBytes = 0;
  private paused = false;
  private done = false;
  private readonly acks = new Map<number, number>();
  private acksScheduled = false;
  private lostReports = 0;

  constructor(private readonly options: ConnectionOptions) {
    this.host = options.host;
    this.socket = options.socket;
    this.writer = options.writer;
    this.events = options.events;
    this.pendingLimit = options.pendingLimit;
    this.parser = new FrameParser(options.maxFrameBytes);
  }

  get remoteAddress(): string | undefined {
    return this.socket.remoteAddress;
  }

  start(): void {
    const socket = this.socket;
    socket.setTimeout(this.options.idleTimeoutMs, () => this.close(CloseReason.IDLE));
    socket.on('data', (chunk: Buffer) => this.onData(chunk));
    socket.on('end', () => this.close(this.endReason()));
    socket.on('close', () => this.close(this.endReason()));
    socket.on('error', (e: Error) =>
      this.close(CloseReason.SOCKET_ERROR, (e as NodeJS.ErrnoException).code ?? e.message),
    );
    socket.resume();
  }

  /** Destroys the socket and reports why, once. What was already queued still commits. */
  close(reason: CloseReason, detail?: string): void {
    if (this.done) return;
    this.done = true;
    this.socket.destroy();
    for (const id of this.slots) if (id !== undefined) this.events.releaseStream(this, id);
    this.events.closed(this, reason, detail);
  }

  private endReason(): CloseReason {
    return this.parser.bufferedBytes > 0 || this.batch
      ? CloseReason.TRUNCATED_FRAME
      : CloseReason.PEER_CLOSED;
  }

  private onData(chunk: Buffer): void {
    if (this.done) return;
    let failure: unknown;
    try {
      if (this.mode !== 'corral') this.plain.reserve(chunk.length + this.parser.bufferedBytes);
      this.parser.push(chunk, this.onFrame);
    } catch (e: unknown) {
      failure = e;
    }
    // Whole messages before a bad frame are kept; the connection ends at the bad frame.
    if (this.mode === 'plain') this.flushPlain();
    if (failure === undefined) return;
    if (failure instanceof FrameError) {
      const reason =
        failure.code === ErrorCode.PAYLOAD_TOO_LARGE
          ? CloseReason.FRAME_TOO_LARGE
          : CloseReason.MALFORMED_LENGTH;
      this.close(reason, failure.message);
    } else if (failure instanceof CorralProtocolError) this.close(CloseReason.PROTOCOL, failure.message);
    else
      this.close(
        CloseReason.INTERNAL,
        failure instanceof Error ? (failure.stack ?? failure.message) : 'non-error thrown',
      );
  }

  private readonly onFrame = (buf: Buffer, start: number, end: number): void => {
    if (this.done) return;
    if (this.mode === 'plain') {
      this.plain.add(buf, start, end);
      return;
    }
    if (this.batch) {
      this.onBatchLine(buf, start, end);
      return;
    }
    if (this.mode === 'unknown') {
      this.mode = isCorralControl(buf, start, end) ? 'corral' : 'plain';
      if (this.mode === 'plain') {
        this.plain.add(buf, start, end);
        return;
      }
    }
    if (!isCorralControl(buf, start, end)) throw new CorralProtocolError('expected a control frame');
    this.onControl(parseCorralControl(buf, start, end));
  };

  private onControl(msg: CorralControl): void {
    if (msg.kind === 'open') {
      const previous = this.slots[msg.slot];
      if (previous !== undefined && previous !== msg.streamId) this.events.releaseStream(this, previous);
      this.slots[msg.slot] = msg.streamId;
      this.events.claimStream(this, msg.streamId);
      const { slot, streamId, key } = msg;
      // Answer after everything queued before (and the key) has committed, so `at` is durable.
      this.writer.append({
        ...(key === undefined ? {} : { stream: { id: streamId, position: 0, key } }),
        settle: (error) => {
          if (error) return this.close(CloseReason.INGEST_FAILED, error.message);
          if (this.slots[slot] === streamId) {
            this.send({ kind: 'at', slot, position: this.writer.committedPosition(streamId) });
          }
        },
      });
      return;
    }
    if (msg.kind === 'find') {
      const { slot, key } = msg;
      this.writer.append({
        settle: (error) => {
          if (error) return this.close(CloseReason.INGEST_FAILED, error.message);
          const found = this.writer.findByKey(key);
          this.send(
            found
              ? { kind: 'known', slot, key, streamId: found.streamId, position: found.position }
              : { kind: 'unknown', slot, key },
          );
        },
      });
      return;
    }
    if (msg.kind === 'lost') {
      this.events.lost(this, msg.slot, msg.streamId, msg.bytes, this.lostReports++ < LOGGED_LOST_REPORTS);
      return;
    }
    if (msg.kind !== 'batch') throw new CorralProtocolError(`unexpected ${msg.kind} from a sender`);
    const streamId = this.slots[msg.slot];
    if (streamId === undefined) throw new CorralProtocolError(`batch on slot ${msg.slot}, which is not open`);
    const skipBelow = this.writer.appliedPosition(streamId);
    this.batch = new BatchAssembler(msg.slot, streamId, msg.start, msg.end, msg.count, skipBelow);
    if (this.batch.startsAfterGap) this.events.gap(this, streamId, skipBelow, msg.start);
  }

  private onBatchLine(buf: Buffer, start: number, end: number): void {
    const batch = this.batch as BatchAssembler;
    const result = batch.add(buf, start, end);
    if (!result) return;
    this.batch = undefined;
    const { slot, streamId } = batch;
    const bytes = result.bytes;
    this.hold(bytes);
    this.writer.append({
      data: result.data,
      stream: { id: streamId, position: batch.end },
      settle: (error) => {
        this.release(bytes);
        if (error) return this.close(CloseReason.INGEST_FAILED, error.message);
        this.events.ingested(result.keptLines, bytes, result.duplicateLines + result.partialLines);
        if (this.slots[slot] === streamId) this.queueAck(slot, this.writer.committedPosition(streamId));
      },
    });
  }

  private flushPlain(): void {
    const taken = this.plain.take();
    if (!taken) return;
    const bytes = taken.data.length;
    this.hold(bytes);
    this.writer.append({
      data: [taken.data],
      settle: (error) => {
        this.release(bytes);
        if (error) return this.close(CloseReason.INGEST_FAILED, error.message);
        this.events.ingested(taken.lines, bytes, 0);
      },
    });
  }

  private hold(bytes: number): void {
    this.pendingBytes += bytes;
    if (!this.paused && this.pendingBytes > this.pendingLimit()) {
      this.paused = true;
      this.socket.pause();
    }
  }

  private release(bytes: number): void {
    this.pendingBytes -= bytes;
    if (this.paused && this.pendingBytes <= this.pendingLimit() / 2) {
      this.paused = false;
      if (!this.done) this.socket.resume();
    }
  }

  /** Acks of one commit go out together, one per slot, after all its items have settled. */
  private queueAck(slot: number, position: number): void {
    this.acks.set(slot, Math.max(position, this.acks.get(slot) ?? 0));
    if (this.acksScheduled) return;
    this.acksScheduled = true;
    queueMicrotask(() => {
      this.acksScheduled = false;
      for (const [s, p] of this.acks) this.send({ kind: 'ack', slot: s, position: p });
      this.acks.clear();
    });
  }

  private send(msg: CorralControl): void {
    if (this.done || this.socket.destroyed) return;
    this.socket.write(encodeCorralControlFrame(msg));
  }
}

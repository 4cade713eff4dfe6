import { setTimeout as sleep } from 'node:timers/promises';
import type { Logger } from 'pino';
import { CorralProtocolError, type CorralControl } from '../protocol/syslog-corral.js';
import { ForwarderError, ForwarderErrorCode } from './errors.js';
import type { FileTail } from './file-tail.js';
import type { ListenerAnswer } from './generation-plan.js';
import type { Session } from './session.js';

export interface PumpOptions {
  readonly corral: boolean;
  readonly maxMessageBytes: number;
  readonly maxBatchBytes: number;
  readonly windowBytes: number;
  readonly pollIntervalMs: number;
  readonly responseTimeoutMs: number;
  /** How long a stop waits for acks of lines in flight, in ms. */
  readonly drainTimeoutMs: number;
  readonly clock: () => number;
  readonly log: Logger;
  /** Called after a tail's generations were placed from the listener's answers. */
  readonly recovered: () => Promise<void>;
}

export interface PumpStats {
  readonly linesSent: number;
  readonly bytesSent: number;
}

/** Moves lines from the tails into one session until it ends. */
export interface Pump {
  /** Runs until the session closes (rejects with why) or `signal` aborts; true if anything was acked. */
  run(signal: AbortSignal): Promise<boolean>;
  onControl(msg: CorralControl): void;
  readonly progressed: boolean;
  readonly stats: PumpStats;
}

/** The listener did not answer in time (CORRAL_ERR_RESPONSE_TIMEOUT). */
export class ResponseTimeoutError extends ForwarderError {
  override readonly name: string = 'ResponseTimeoutError';

  constructor(message: string) {
    super(ForwarderErrorCode.RESPONSE_TIMEOUT, message);
  }
}

/** Resolves a sleeping loop early when something it waits for happens (even just before it sleeps). */
class Waker {
  private controller = new AbortController();
  private pending = false;

  wake(): void {
    this.pending = true;
    this.controller.abort();
  }

  async wait(ms: number, signal: AbortSignal): Promise<void> {
    if (this.pending) {
      this.pending = false;
      return;
    }
    this.controller = new AbortController();
    await sleep(ms, undefined, { signal: AbortSignal.any([this.controller.signal, signal]) }).catch(
      () => undefined /* woken early or aborted: the caller looks again */,
    );
    this.pending = false;
  }
}

export function pump(session: Session, tails: readonly FileTail[], options: PumpOptions): Pump {
  const { corral, clock } = options;
  const waker = new Waker();
  const opened: (string | undefined)[] = [];
  const positions = new Map<number, number>();
  /** Answers to `find`, by slot and key; undefined until answered. */
  const lookups = new Map<string, ListenerAnswer | 'waiting'>();
  const stats = { linesSent: 0, bytesSent: 0 };
  let progressed = false;
  let lastAckAt = clock();

  const inFlight = (): number => tails.reduce((sum, t) => sum + t.inFlight, 0);

  function onControl(msg: CorralControl): void {
    if (msg.kind === 'decommissioned') return; // the forwarder handles it before the pump
    if (msg.kind === 'known' || msg.kind === 'unknown') {
      const id = `${msg.slot}/${msg.key}`;
      if (lookups.get(id) !== 'waiting') {
        session.destroy(
          new CorralProtocolError(`listener answered a find that was not asked (slot ${msg.slot})`),
        );
        return;
      }
      lookups.set(id, msg.kind === 'known' ? { streamId: msg.streamId, position: msg.position } : undefined);
      waker.wake();
      return;
    }
    const tail = tails[msg.slot];
    if (!tail || opened[msg.slot] === undefined) {
      session.destroy(new CorralProtocolError(`listener answered for slot ${msg.slot}, which is not open`));
      return;
    }
    if (msg.kind === 'at') {
      positions.set(msg.slot, msg.position);
    } else if (msg.kind === 'ack') {
      tail.ack(msg.position);
      lastAckAt = clock();
      progressed = true;
    } else {
      session.destroy(new CorralProtocolError(`unexpected ${msg.kind} from the listener`));
    }
    waker.wake();
  }

  /** Binds slot `i` to the tail's current stream and moves the tail to where the listener is. */
  async function open(i: number, tail: FileTail, streamId: string, signal: AbortSignal): Promise<void> {
    positions.delete(i);
    opened[i] = streamId;
    const key = tail.streamKey;
    session.send({ kind: 'open', slot: i, streamId, ...(key === undefined ? {} : { key }) });
    const deadline = clock() + options.responseTimeoutMs;
    while (!positions.has(i)) {
      if (!session.isOpen) throw await session.closed;
      if (signal.aborted) return;
      if (clock() > deadline) throw new ResponseTimeoutError('the listener did not answer an open');
      await waker.wait(options.pollIntervalMs, signal);
    }
    tail.resume(positions.get(i));
  }

  /** Asks the listener which streams the files of a tail that lost its records are, and places them. */
  async function recover(i: number, tail: FileTail, signal: AbortSignal): Promise<void> {
    const files = await tail.recoveryFiles();
    const ids = files.map((f) => `${i}/${f.key}`);
    for (const id of ids) lookups.set(id, 'waiting');
    for (const f of files) session.send({ kind: 'find', slot: i, key: f.key });
    const deadline = clock() + options.responseTimeoutMs;
    while (ids.some((id) => lookups.get(id) === 'waiting')) {
      if (!session.isOpen) throw await session.closed;
      if (signal.aborted) return;
      if (clock() > deadline) throw new ResponseTimeoutError('the listener did not answer a find');
      await waker.wait(options.pollIntervalMs, signal);
    }
    const answers = new Map<string, ListenerAnswer>();
    files.forEach((f, n) => {
      const answer = lookups.get(ids[n] as string);
      if (answer !== 'waiting') answers.set(f.headHash, answer);
    });
    for (const id of ids) lookups.delete(id);
    await tail.recover(answers);
    await options.recovered();
  }

  /** Tells the listener of generations that vanished before they were read (best effort). */
  async function reportLost(i: number, tail: FileTail): Promise<void> {
    const lost = tail.unreportedLost();
    if (lost.length === 0) return;
    for (const r of lost) {
      session.send({ kind: 'lost', slot: i, streamId: r.streamId, bytes: Math.max(0, r.size - r.offset) });
    }
    await tail.markReported(lost);
  }

  async function step(signal: AbortSignal): Promise<boolean> {
    let moved = false;
    for (let i = 0; i < tails.length; i++) {
      const tail = tails[i] as FileTail;
      if (!session.isOpen || signal.aborted) break;
      if (inFlight() >= options.windowBytes) break;
      if (tail.needsRecovery) {
        if (corral) await recover(i, tail, signal);
        moved = true;
        continue;
      }
      if (corral) await reportLost(i, tail);
      if (!(await tail.prepare())) continue;
      const streamId = tail.streamId as string;
      if (corral && opened[i] !== streamId) {
        await open(i, tail, streamId, signal);
        moved = true;
      }
      const idle = inFlight() === 0;
      const read = await tail.read({
        slot: i,
        corral,
        maxMessageBytes: options.maxMessageBytes,
        maxBatchBytes: options.maxBatchBytes,
      });
      if (read.kind === 'data') {
        if (idle) lastAckAt = clock();
        const end = read.end;
        const onFlushed = (): void => {
          read.release();
          if (corral) return;
          tail.ack(end);
          progressed = true;
        };
        await session.write(read.segments, onFlushed);
        stats.linesSent += read.lines;
        for (const s of read.segments) stats.bytesSent += s.length;
        moved = true;
      } else if (read.kind === 'ended' && tail.inFlight === 0) {
        await tail.nextGeneration();
        moved = true;
      }
    }
    return moved;
  }

  /** On stop, waits a little for acks of what is in flight, so the stored positions are current. */
  async function drain(): Promise<void> {
    const deadline = clock() + options.drainTimeoutMs;
    const never = new AbortController().signal;
    while (corral && inFlight() > 0 && session.isOpen && clock() < deadline) {
      await waker.wait(Math.min(options.pollIntervalMs, Math.max(1, deadline - clock())), never);
    }
  }

  return {
    onControl,
    get progressed() {
      return progressed;
    },
    stats,
    async run(signal) {
      const onAbort = (): void => waker.wake();
      signal.addEventListener('abort', onAbort, { once: true });
      void session.closed.then(() => waker.wake());
      try {
        for (const tail of tails) tail.resume(undefined);
        while (!signal.aborted) {
          if (!session.isOpen) throw await session.closed;
          if (await step(signal)) continue;
          if (corral && inFlight() > 0 && clock() - lastAckAt > options.responseTimeoutMs) {
            throw new ResponseTimeoutError('the listener stopped acknowledging');
          }
          await waker.wait(options.pollIntervalMs, signal);
        }
        await drain();
        return progressed;
      } finally {
        signal.removeEventListener('abort', onAbort);
      }
    },
  };
}

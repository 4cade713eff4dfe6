import type { FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from 'pino';
import type { IngestFileState } from '../../protocol/syslog-state.js';
import { IngestStateFile, pruneStreams, type StreamPosition } from './ingest-state.js';
import { ControllerError, ControllerErrorCode } from '../errors.js';
import { MAX_GENERATION, currentName, openCurrentFile, rotateFiles, stemFor } from './host-files.js';

/** One unit of work for a host's ingest file. */
export interface IngestItem {
  /** Complete lines, each ending in LF, in order; absent for an item that only waits for a commit. */
  readonly data?: readonly Buffer[];
  /**
   * The stream position this item's lines bring the stream to, and the generation's key
   * (recorded with the stream from this commit on).
   */
  readonly stream?: { readonly id: string; readonly position: number; readonly key?: string };
  /** Called once: after the item is durable (no error), or when it never will be. */
  settle(error: Error | undefined): void;
}

/** A host's view of the ingest store, as its connections use it. */
export interface HostWriter {
  readonly hostId: string;
  /** True after an I/O failure: every item is refused; the store reopens from the last commit. */
  readonly failed: boolean;
  /** Position of a stream including queued items: what the next batch is deduplicated against. */
  appliedPosition(streamId: string): number;
  /** Position of a stream that is durably written. */
  committedPosition(streamId: string): number;
  /** The one committed stream with this key and its position; undefined for none or several. */
  findByKey(key: string): { readonly streamId: string; readonly position: number } | undefined;
  /** Queues an item; it settles after the group commit that includes it. */
  append(item: IngestItem): void;
  /** The connection that acquired this writer is done with it (once per acquire). */
  release(): void;
}

/** An item appended after the store began to close (CORRAL_ERR_CLOSED). */
export class IngestClosedError extends ControllerError {
  override readonly name: string = 'IngestClosedError';

  constructor(message: string) {
    super(ControllerErrorCode.CLOSED, message);
  }
}

/** `e` when it is an Error, else a CORRAL_ERR_WRITE_FAILED carrying it. */
export function writeFailure(e: unknown, file: string): Error {
  return e instanceof Error
    ? e
    : new ControllerError(ControllerErrorCode.WRITE_FAILED, `${file}: ${String(e)}`, { cause: e, file });
}

/** What one host brings to a group commit. */
export interface HostPart {
  readonly host: HostIngest;
  readonly items: readonly IngestItem[];
  /** The lines, written at `offset` of the host's ingest file. */
  readonly buffers: readonly Buffer[];
  readonly bytes: number;
  readonly offset: number;
  /** Streams this part moves: what the journal records for it. */
  readonly moved: ReadonlyMap<string, StreamPosition>;
  /** Every stream's position once the part is committed. */
  readonly streams: ReadonlyMap<string, StreamPosition>;
  /** False for a part whose items only wait for the commits before them. */
  readonly changed: boolean;
}

interface Queued {
  readonly item: IngestItem;
  readonly bytes: number;
}

export interface HostIngestOptions {
  readonly logDir: string;
  readonly hostId: string;
  /** The host's name, for its file names (host-files.ts); the id alone names them without it. */
  readonly hostName?: string | undefined;
  readonly log: Logger;
  readonly clock: () => number;
  /** Told when the host has items queued and how many bytes they added. */
  readonly queued: (host: HostIngest, bytes: number) => void;
  /** Told when a connection releases the host. */
  readonly released: (host: HostIngest) => void;
}

/**
 * One host's ingest file, `<logDir>/<hostName>.<hostId>.log` (rotated generations beside it,
 * host-files.ts), and its checkpoint `<hostId>.state`, as
 * the ingest store (ingest-store.ts) drives them: items queue here, the store takes them into
 * group commits across hosts (`take`, `write`, then `committed` once the journal is synced),
 * and checkpoints the file and its positions (`checkpoint`) before the journal is reused.
 * On open, bytes beyond the checkpointed length (a commit cut short by a crash, that recovery
 * did not replay) are truncated, so the state and the file always agree. Lengths and offsets
 * here count the host's bytes across its files; the current file holds them from `file.base`.
 */
export class HostIngest implements HostWriter {
  readonly hostId: string;
  /** Connections using this host. */
  refs = 0;
  /** Journals (by index) holding commits of this host that its state file does not. */
  readonly journals = new Set<number>();
  private readonly log: Logger;
  private readonly clock: () => number;
  private readonly queuedFn: HostIngestOptions['queued'];
  private readonly releasedFn: HostIngestOptions['released'];
  private queue: Queued[] = [];
  private queuedBytesValue = 0;
  private inFlight = 0;
  private failure: Error | undefined;
  private closing = false;
  private readonly applied = new Map<string, number>();
  /** Positions as of the last part taken (ahead of `committed` while parts are in flight). */
  private readonly written: Map<string, StreamPosition>;
  private writtenBytes: number;
  private stateTurn: Promise<unknown> = Promise.resolve();
  /** Set while the store rotates this host's file: no part is taken meanwhile. */
  rotating = false;
  private readonly logDir: string;
  private readonly stem: string;

  private constructor(
    options: HostIngestOptions,
    private fh: FileHandle,
    private readonly stateFile: IngestStateFile,
    private fileState: IngestFileState,
    private committedBytes: number,
    private readonly committedStreams: Map<string, StreamPosition>,
  ) {
    this.logDir = options.logDir;
    this.stem = stemFor(options.hostId, options.hostName);
    this.hostId = options.hostId;
    this.log = options.log;
    this.clock = options.clock;
    this.queuedFn = options.queued;
    this.releasedFn = options.released;
    this.written = new Map(committedStreams);
    this.writtenBytes = committedBytes;
  }

  static async open(options: HostIngestOptions): Promise<HostIngest> {
    const { logDir, hostId } = options;
    const log = options.log.child({ hostId });
    const opened = await IngestStateFile.open(join(logDir, `${hostId}.state`));
    const { file: stateFile, state } = opened;
    let fh: FileHandle | undefined;
    try {
      const current = await openCurrentFile(logDir, hostId, state, log, stemFor(hostId, options.hostName));
      fh = current.fh;
      const { base } = current.file;
      const size = base + (await fh.stat()).size;
      // An empty state file that existed before: lines were written, but no commit attempted.
      const committedLength = state?.logBytes ?? (opened.existed && opened.fresh ? base : size);
      let committedBytes = size;
      if (size > committedLength) {
        await fh.truncate(committedLength - base);
        await fh.datasync();
        log.warn({ discardedBytes: size - committedLength }, 'uncommitted ingest tail discarded');
        committedBytes = committedLength;
      } else if (size < committedLength) {
        log.warn(
          { expectedBytes: committedLength, size },
          'ingest file shorter than its state; appending at its end',
        );
      } else if (!state && size > 0) {
        log.warn(
          { size },
          'ingest file has no intact commit record; keeping it whole, stream positions start afresh',
        );
      }
      const committed = new Map<string, StreamPosition>(Object.entries(state?.streams ?? {}));
      if (current.changed) await stateFile.write(committedBytes, committed, current.file);
      return new HostIngest({ ...options, log }, fh, stateFile, current.file, committedBytes, committed);
    } catch (e: unknown) {
      await fh?.close();
      await stateFile.close();
      throw e;
    }
  }

  get failed(): boolean {
    return this.failure !== undefined;
  }

  get queuedBytes(): number {
    return this.queuedBytesValue;
  }

  get hasQueued(): boolean {
    return this.queue.length > 0;
  }

  /** No part taken whose commit has not settled. */
  get settled(): boolean {
    return this.inFlight === 0;
  }

  /** Nothing queued and nothing in a commit not yet settled. */
  get idle(): boolean {
    return this.queue.length === 0 && this.inFlight === 0;
  }

  appliedPosition(id: string): number {
    return this.applied.get(id) ?? this.committedStreams.get(id)?.position ?? 0;
  }

  committedPosition(id: string): number {
    return this.committedStreams.get(id)?.position ?? 0;
  }

  findByKey(key: string): { streamId: string; position: number } | undefined {
    let found: { streamId: string; position: number } | undefined;
    for (const [streamId, p] of this.committedStreams) {
      if (p.key !== key) continue;
      if (found) return undefined;
      found = { streamId, position: p.position };
    }
    return found;
  }

  append(item: IngestItem): void {
    if (this.failure) return item.settle(this.failure);
    if (this.closing) return item.settle(new IngestClosedError(`ingest for host ${this.hostId} is closed`));
    if (item.stream && item.stream.position > this.appliedPosition(item.stream.id)) {
      this.applied.set(item.stream.id, item.stream.position);
    }
    let bytes = 0;
    for (const buf of item.data ?? []) bytes += buf.length;
    this.queue.push({ item, bytes });
    this.queuedBytesValue += bytes;
    this.queuedFn(this, bytes);
  }

  release(): void {
    this.releasedFn(this);
  }

  /**
   * Takes queued items, whole and in order, into a part of the next group commit: the first
   * one if it fits `room`, then more while the part stays within `share` bytes of lines.
   * Undefined when not even the first fits.
   */
  take(share: number, room: number): HostPart | undefined {
    let n = 0;
    let bytes = 0;
    while (n < this.queue.length) {
      const next = (this.queue[n] as Queued).bytes;
      if (n === 0 ? next > room : bytes + next > Math.min(share, room)) break;
      bytes += next;
      n++;
    }
    if (n === 0 || this.rotating) return undefined;
    const taken = this.queue.splice(0, n);
    this.queuedBytesValue -= bytes;
    const buffers: Buffer[] = [];
    const moved = new Map<string, StreamPosition>();
    const now = this.clock();
    for (const { item } of taken) {
      for (const buf of item.data ?? []) if (buf.length > 0) buffers.push(buf);
      const s = item.stream;
      const before = s && this.written.get(s.id);
      if (s && (!before || s.position > before.position || (s.key !== undefined && s.key !== before.key))) {
        const key = s.key ?? before?.key;
        const p: StreamPosition = {
          position: Math.max(s.position, before?.position ?? 0),
          updatedAtMs: now,
          ...(key === undefined ? {} : { key }),
        };
        this.written.set(s.id, p);
        moved.set(s.id, p);
      }
    }
    const offset = this.writtenBytes;
    this.writtenBytes += bytes;
    pruneStreams(this.written);
    this.inFlight++;
    return {
      host: this,
      items: taken.map((q) => q.item),
      buffers,
      bytes,
      offset,
      moved,
      streams: new Map(this.written),
      changed: bytes > 0 || moved.size > 0,
    };
  }

  /** The current file's name in the log directory. */
  get logName(): string {
    return currentName(this.fileState.stem);
  }

  /** Writes a part's lines where they belong in the ingest file (not yet durable). */
  async write(part: HostPart): Promise<void> {
    if (part.bytes === 0) return;
    const at = part.offset - this.fileState.base;
    const { bytesWritten } = await this.fh.writev(part.buffers as Buffer[], at);
    if (bytesWritten !== part.bytes) {
      throw new ControllerError(
        ControllerErrorCode.WRITE_FAILED,
        `short write to ${this.logName}: ${bytesWritten} of ${part.bytes} bytes`,
        { file: this.logName },
      );
    }
  }

  /** Bytes the current file takes before it is due for rotation (at least 1: a part takes one item). */
  roomInFile(maxFileBytes: number): number {
    return Math.max(1, maxFileBytes - (this.writtenBytes - this.fileState.base));
  }

  /**
   * Whether the current file should be rotated: it holds `maxFileBytes` or more, or carries a
   * stem other than the host's (a file from before names, or a renamed host) and is not empty.
   */
  wantsRotation(maxFileBytes: number): boolean {
    if (this.fileState.generation >= MAX_GENERATION) return false;
    const size = this.committedBytes - this.fileState.base;
    return size >= maxFileBytes || (size > 0 && this.fileState.stem !== this.stem);
  }

  /**
   * Rotates the current file: the store calls it only while no part of this host is in
   * flight (`rotating` keeps new ones from being taken), so everything written is committed.
   * The state is checkpointed first (it then covers every journal record of this host, and
   * replay skips them all), the file renamed to its generation, the next one created, and the
   * state written naming it: after a crash anywhere in between, openCurrentFile finds where
   * the next bytes go, and none is written twice or lost.
   */
  rotate(): Promise<number> {
    return this.inStateTurn(async () => {
      const bytes = this.committedBytes;
      const streams = new Map(this.committedStreams);
      const from = this.fileState;
      await this.fh.datasync();
      await this.stateFile.write(bytes, streams, from);
      const next = await rotateFiles(this.logDir, from, this.stem, bytes);
      await this.stateFile.write(bytes, streams, next.file);
      const old = this.fh;
      this.fh = next.fh;
      this.fileState = next.file;
      await old.close();
      this.log.info({ generation: from.generation, bytes: bytes - from.base }, 'ingest file rotated');
      return 3;
    });
  }

  /**
   * The part is durable: its journal record is synced into journal `journal` (or, for
   * `undefined`, `persist` made it so); its positions become the committed ones and its
   * items settle.
   */
  committed(part: HostPart, journal: number | undefined): void {
    this.inFlight--;
    if (journal !== undefined && part.changed) this.journals.add(journal);
    this.apply(part);
    for (const item of part.items) item.settle(undefined);
  }

  private apply(part: HostPart): void {
    if (!part.changed || part.offset + part.bytes < this.committedBytes) return;
    this.committedBytes = part.offset + part.bytes;
    this.committedStreams.clear();
    for (const [id, p] of part.streams) this.committedStreams.set(id, p);
    for (const [id, position] of this.applied) {
      if ((this.committedStreams.get(id)?.position ?? 0) >= position) this.applied.delete(id);
    }
  }

  /** Refuses everything from now on: queued items (and those of `parts`) settle with `error`. */
  fail(error: Error, parts: readonly HostPart[] = []): void {
    this.failure ??= error;
    const pending = [...parts.flatMap((p) => p.items), ...this.queue.map((q) => q.item)];
    this.inFlight -= parts.length;
    this.queue = [];
    this.queuedBytesValue = 0;
    this.applied.clear();
    for (const item of pending) item.settle(this.failure);
  }

  /**
   * Makes what is committed durable on its own: fdatasync of the ingest file, then the state
   * file records its length and positions. Returns the fdatasync calls made (two).
   */
  checkpoint(): Promise<number> {
    return this.inStateTurn(async () => {
      const bytes = this.committedBytes;
      const streams = new Map(this.committedStreams);
      await this.fh.datasync();
      await this.stateFile.write(bytes, streams, this.fileState);
      return 2;
    });
  }

  /**
   * Commits a part without the journal, once its lines are written: fdatasync of the ingest
   * file, then its state records the part's end (the journal's records of this host are then
   * covered too). The caller then calls `committed(part, undefined)`. Returns the fdatasyncs.
   */
  persist(part: HostPart): Promise<number> {
    return this.inStateTurn(async () => {
      this.apply(part);
      await this.fh.datasync();
      await this.stateFile.write(this.committedBytes, new Map(this.committedStreams), this.fileState);
      return 2;
    });
  }

  /** State writes one at a time, each from the positions committed when its turn comes. */
  private inStateTurn<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.stateTurn.then(fn);
    this.stateTurn = run.then(
      () => undefined,
      () => undefined /* the caller gets the error; the next write still runs */,
    );
    return run;
  }

  /** Refuses new items; the store closes the files once the host is idle. */
  beginClose(): void {
    this.closing = true;
  }

  async close(): Promise<void> {
    await this.fh.close();
    await this.stateFile.close();
  }
}

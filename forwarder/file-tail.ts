import { randomBytes } from 'node:crypto';
import type { FileHandle } from 'node:fs/promises';
import type { Logger } from 'pino';
import { headHash, identify, openIfExists, sameInode, type FileIdentity } from './file-identity.js';
import {
  EncodeBufferPool,
  encodeLines,
  type EncodeBuffer,
  type Encoded,
  type EncodeOptions,
} from './line-encoder.js';
import { PositionSaver } from './position-saver.js';
import type { PositionStore } from './position-store.js';
import { findPredecessor } from './rotated-files.js';

export interface TailOptions {
  readonly path: string;
  readonly store: PositionStore;
  readonly log: Logger;
  /** Bytes read from the file at a time: the forwarder's memory per file is a small multiple. */
  readonly readChunkBytes: number;
  /** How long a rotated-away file must stay unchanged before its generation is over. */
  readonly rotateGraceMs: number;
  readonly clock: () => number;
}

export type TailRead =
  | {
      readonly kind: 'data';
      readonly segments: Buffer[];
      readonly lines: number;
      readonly end: number;
      /** Call once the segments are written out: their buffer is reused for a later read. */
      readonly release: () => void;
    }
  | { readonly kind: 'idle' }
  /** Every byte of the generation has been read; switch once it is all acknowledged. */
  | { readonly kind: 'ended' };

interface Generation extends FileIdentity {
  readonly streamId: string;
}

/** How often, at most, a file being read is checked for having been truncated and rewritten. */
const HEAD_CHECK_INTERVAL_MS = 500;

const newStreamId = (): string => randomBytes(16).toString('hex');

/**
 * Follows one log path across rotations. A *generation* is one file's life at that path (see
 * protocol/syslog-corral.ts); the tail reads it from wherever its bytes are (the path, or the
 * rotated name or copy it was moved to) until it is over, then starts the next one at offset 0.
 *
 *  - rename-and-create: the path's inode changes; the old file, still open, is drained until it
 *    has not grown for `rotateGraceMs`.
 *  - copytruncate: the file shrinks below the read position, or its first line changes; bytes
 *    not yet read are taken from the copy (a sibling with the same first line).
 *  - while stopped: the stored generation is found again by inode or first line among the
 *    path's siblings (`app.log.1`, `app.log-20240101`, not compressed ones).
 */
export class FileTail {
  readonly path: string;
  private readonly options: TailOptions;
  private readonly log: Logger;
  private generation: Generation | undefined;
  private source: FileHandle | undefined;
  private sourceIsPath = false;
  private lastGrowthAt = 0;
  private lastHeadCheckAt = 0;
  private readonly buffers: EncodeBufferPool;
  private sendPosition = 0;
  private ackedPosition = 0;
  private readonly saver: PositionSaver;

  constructor(options: TailOptions) {
    this.options = options;
    this.path = options.path;
    this.log = options.log.child({ file: options.path });
    this.saver = new PositionSaver(options.store, options.path, this.log);
    this.buffers = new EncodeBufferPool(options.readChunkBytes);
  }

  get streamId(): string | undefined {
    return this.generation?.streamId;
  }

  /** Bytes sent but not acknowledged. */
  get inFlight(): number {
    return this.sendPosition - this.ackedPosition;
  }

  get acked(): number {
    return this.ackedPosition;
  }

  /** Finds where the stored generation's bytes are now. */
  async init(): Promise<void> {
    const record = await this.options.store.get(this.path);
    if (!record) return;
    const generation: Generation = record;
    const live = await openIfExists(this.path);
    if (live) {
      let same = false;
      try {
        const identity = await identify(live);
        same =
          identity !== undefined &&
          sameInode(identity, generation) &&
          identity.headHash === generation.headHash &&
          (await live.stat()).size >= record.offset;
      } finally {
        if (!same) await live.close();
      }
      if (same) {
        this.adopt(generation, live, true, record.offset);
        return;
      }
    }
    const found = await findPredecessor(this.path, generation, record.offset);
    if (found) {
      this.log.info({ from: found.path, offset: record.offset }, 'resuming a rotated generation');
      this.adopt(generation, found.fh, false, record.offset);
      return;
    }
    this.log.warn({ offset: record.offset }, 'previous generation not found; starting with the current file');
  }

  /** Where to send from after (re)connecting: the acked position, or further if the listener has more. */
  resume(listenerPosition: number | undefined): void {
    if (listenerPosition !== undefined && listenerPosition > this.ackedPosition) {
      this.ack(listenerPosition);
    }
    this.sendPosition = this.ackedPosition;
  }

  /** Records an acknowledgement (or, in rfc5425 mode, a flushed write) and persists it soon. */
  ack(position: number): void {
    if (position <= this.ackedPosition) return;
    this.ackedPosition = position;
    if (this.sendPosition < position) this.sendPosition = position;
    if (this.generation) this.saver.save(this.generation.streamId, position);
  }

  /** Starts following the file at the path if there is no generation yet; true when there is one. */
  async prepare(): Promise<boolean> {
    return this.generation !== undefined || this.startGeneration();
  }

  /** Reads and encodes the next lines of the current generation (after `prepare`). */
  async read(encode: Omit<EncodeOptions, 'final'>): Promise<TailRead> {
    if (!this.generation) return { kind: 'idle' };
    let size = await this.sourceSize();
    if (this.sourceIsPath && (size < this.sendPosition || (await this.headChanged(false)))) {
      if (!(await this.followCopy())) return { kind: 'ended' };
      size = await this.sourceSize();
    }
    if (size > this.sendPosition) {
      const chunk = await this.readChunk(size);
      const encoded = encodeLines(chunk.target, chunk.bytes, this.sendPosition, encode);
      if (encoded.consumed > 0) {
        this.lastGrowthAt = this.options.clock();
        this.sendPosition += encoded.consumed;
        return this.data(encoded, chunk.target);
      }
      this.buffers.give(chunk.target);
      size = this.sendPosition + chunk.bytes;
    }
    // At the end of what there is: has the file been truncated in place, or replaced?
    if (this.sourceIsPath && (await this.headChanged(true))) {
      if (!(await this.followCopy())) return { kind: 'ended' };
      return this.read(encode);
    }
    if (!(await this.isOver())) return { kind: 'idle' };
    if (size > this.sendPosition) {
      const chunk = await this.readChunk(size);
      const encoded = encodeLines(chunk.target, chunk.bytes, this.sendPosition, { ...encode, final: true });
      this.sendPosition += encoded.consumed;
      return this.data(encoded, chunk.target);
    }
    return { kind: 'ended' };
  }

  private async sourceSize(): Promise<number> {
    return (await (this.source as FileHandle).stat()).size;
  }

  private data(encoded: Encoded, target: EncodeBuffer): TailRead {
    let released = false;
    return {
      kind: 'data',
      segments: encoded.segments,
      lines: encoded.lines,
      end: this.sendPosition,
      release: () => {
        if (released) return;
        released = true;
        this.buffers.give(target);
      },
    };
  }

  /** Reads up to a chunk at the send position into an encoding buffer no one else holds. */
  private async readChunk(size: number): Promise<{ target: EncodeBuffer; bytes: number }> {
    const chunkBytes = this.options.readChunkBytes;
    const target = this.buffers.take();
    const wanted = Math.min(chunkBytes, size - this.sendPosition);
    const { bytesRead } = await (this.source as FileHandle).read(
      target.buf,
      target.sourceOffset,
      wanted,
      this.sendPosition,
    );
    return { target, bytes: bytesRead };
  }

  /** Ends the current generation (all of it acknowledged); the next read starts the next one. */
  async nextGeneration(): Promise<void> {
    await this.source?.close();
    this.source = undefined;
    this.generation = undefined;
    this.sendPosition = 0;
    this.ackedPosition = 0;
  }

  async close(): Promise<void> {
    await this.flush();
    await this.source?.close();
    this.source = undefined;
  }

  /** Waits until the acknowledged position is in the store. */
  async flush(): Promise<void> {
    await this.saver.flush();
  }

  private adopt(generation: Generation, fh: FileHandle, isPath: boolean, offset: number): void {
    this.generation = generation;
    this.source = fh;
    this.sourceIsPath = isPath;
    this.sendPosition = offset;
    this.ackedPosition = offset;
    this.saver.stored(generation.streamId, offset);
    this.lastGrowthAt = this.options.clock();
  }

  private async startGeneration(): Promise<boolean> {
    const fh = await openIfExists(this.path);
    if (!fh) return false;
    const identity = await identify(fh).catch(async (e: unknown) => {
      await fh.close();
      throw e;
    });
    if (!identity) {
      await fh.close();
      return false;
    }
    const generation: Generation = { ...identity, streamId: newStreamId() };
    await this.options.store.put({ path: this.path, ...generation, offset: 0 });
    this.adopt(generation, fh, true, 0);
    this.log.info({ streamId: generation.streamId }, 'following a new file generation');
    return true;
  }

  /** The live file was truncated: read what was not yet read from its copy, if one is found. */
  private async followCopy(): Promise<boolean> {
    const generation = this.generation as Generation;
    const found = await findPredecessor(this.path, generation, this.sendPosition, { byInode: false });
    if (!found) {
      this.log.warn(
        { position: this.sendPosition },
        'file truncated and no copy found; unread lines are lost',
      );
      return false;
    }
    await this.source?.close();
    this.source = found.fh;
    this.sourceIsPath = false;
    this.lastGrowthAt = this.options.clock();
    this.log.info(
      { from: found.path, position: this.sendPosition },
      'file truncated; reading the rest from its copy',
    );
    return true;
  }

  /**
   * copytruncate caught late: the file at our inode now starts with another line (truncated,
   * then written again past our position). Checked at the end of the data, and at most every
   * HEAD_CHECK_INTERVAL_MS while reading (a shrink below our position is seen on every read).
   */
  private async headChanged(force: boolean): Promise<boolean> {
    const now = this.options.clock();
    if (!force && now - this.lastHeadCheckAt < HEAD_CHECK_INTERVAL_MS) return false;
    this.lastHeadCheckAt = now;
    return (await headHash(this.source as FileHandle)) !== (this.generation as Generation).headHash;
  }

  /** True when the generation can grow no more: replaced at the path, or a quiet rotated file. */
  private async isOver(): Promise<boolean> {
    const quiet = this.options.clock() - this.lastGrowthAt >= this.options.rotateGraceMs;
    if (!this.sourceIsPath) return quiet;
    const live = await openIfExists(this.path);
    if (!live) return quiet;
    try {
      const st = await live.stat({ bigint: true });
      const replaced = !sameInode(
        { dev: st.dev.toString(), ino: st.ino.toString() },
        this.generation as Generation,
      );
      return replaced && quiet;
    } finally {
      await live.close();
    }
  }
}

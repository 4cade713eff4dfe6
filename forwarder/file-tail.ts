import { randomBytes } from 'node:crypto';
import type { FileHandle } from 'node:fs/promises';
import { stat } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Logger } from 'pino';
import { ForwarderError, ForwarderErrorCode } from './errors.js';
import { headHash, sameInode, streamKey } from './file-identity.js';
import {
  isUnfinished,
  planBaseline,
  planLook,
  planRecovery,
  type ListenerAnswer,
  type RecoveredFile,
} from './generation-plan.js';
import {
  closeCandidates,
  scanGenerations,
  siblingNames,
  type Candidate,
  type Scan,
} from './generation-scan.js';
import {
  EncodeBufferPool,
  encodeLines,
  type EncodeBuffer,
  type Encoded,
  type EncodeOptions,
} from './line-encoder.js';
import { PositionSaver } from './position-saver.js';
import type { GenerationRecord, PathState, PositionStore, Recovery, StoreChange } from './position-store.js';
import { markerPath } from './store-marker.js';

export interface TailOptions {
  readonly path: string;
  readonly store: PositionStore;
  readonly log: Logger;
  /** Corral mode: the listener can say where a file stands (rfc5425 receivers cannot). */
  readonly corral: boolean;
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

/** A file of the path, for finding its stream again at the listener (`find`). */
export interface RecoveryFile {
  readonly headHash: string;
  readonly key: string;
}

interface Active {
  record: GenerationRecord;
  fh: FileHandle;
  /** The file read is (as far as last seen) the one at the path. */
  sourceIsPath: boolean;
  /** Truncated with no copy found: nothing more is read from it. */
  finished: boolean;
  /** The file's size when last looked at. */
  seenSize: number;
}

/** How often, at most, a file being read is checked for having been truncated and rewritten. */
const HEAD_CHECK_INTERVAL_MS = 500;
/** Pending generations whose files are kept open (so a deletion cannot take them). */
const MAX_HELD_FILES = 8;
/** Scans of the directory before an unfinished generation counts as vanished (a rotation may be under way). */
const VANISH_SCANS = 3;
const RESCAN_DELAY_MS = 20;

const newStreamId = (): string => randomBytes(16).toString('hex');

/**
 * Follows one log path across rotations. A *generation* is one file's life at that path (see
 * protocol/syslog-corral.ts); the tail ships generations one after another, in the order they
 * were made, each from wherever its bytes are (the path, a rotated name, or a copy).
 *
 * Every file at the path or among its rotated siblings (`app.log.1`, `app.log-20240101`, not
 * compressed ones) is identified by inode and first line and matched against the path's
 * records: generations shipped or there before the path was first followed are passed over,
 * any other is new, and is queued (recorded as pending) in age order behind the ones already
 * queued. So however many rotations happen while the forwarder is stopped, busy draining an
 * older file or cut off from the listener, each generation is found and shipped in turn. A
 * queued generation that is gone when its turn comes (deleted or compressed before it was
 * read) is counted as lost, logged as a warning and reported to the listener, never skipped
 * silently. Pending generations' files are kept open (a few), so a deletion cannot take them.
 *
 *  - rename-and-create: the path's inode changes; the old file, still open, is drained until
 *    the service has moved on (a newer generation has a line) or it has been quiet for
 *    `rotateGraceMs`.
 *  - copytruncate: the file shrinks below the read position, or its first line changes; bytes
 *    not yet read are taken from the copy (a sibling with the same first line).
 */
export class FileTail {
  readonly path: string;
  private readonly options: TailOptions;
  private readonly store: PositionStore;
  private readonly log: Logger;
  private records: GenerationRecord[] = [];
  private readonly held = new Map<string, FileHandle>();
  private active: Active | undefined;
  private recoveryScan: Scan | undefined;
  private baselineSiblings = false;
  /** What the path is recorded as on each commit (`unplaced` until a first start has asked the listener). */
  private pathState: PathState = 'followed';
  private lastGrowthAt = 0;
  private lastHeadCheckAt = 0;
  private readonly buffers: EncodeBufferPool;
  private sendPosition = 0;
  private ackedPosition = 0;
  private readonly saver: PositionSaver;
  private lostThisRun = 0;
  /** Set until the path's generations are placed by asking the listener (or afresh). */
  needsRecovery: Recovery | undefined;

  constructor(options: TailOptions) {
    this.options = options;
    this.path = options.path;
    this.store = options.store;
    this.log = options.log.child({ file: options.path });
    this.saver = new PositionSaver(options.store, options.path, this.log);
    this.buffers = new EncodeBufferPool(options.readChunkBytes);
  }

  get streamId(): string | undefined {
    return this.active?.record.streamId;
  }

  /** The active generation's key, sent with `open` so the listener can find it after a loss. */
  get streamKey(): string | undefined {
    return this.active && streamKey(this.path, this.active.record.headHash);
  }

  /** Bytes sent but not acknowledged. */
  get inFlight(): number {
    return this.sendPosition - this.ackedPosition;
  }

  get acked(): number {
    return this.ackedPosition;
  }

  /** Generations found vanished since this process started. */
  get lostGenerations(): number {
    return this.lostThisRun;
  }

  /**
   * Loads the path's records and looks at what is on disk now. A path never followed records
   * what is there at once (rotated siblings as there before, to be passed over; the file at
   * the path to be shipped from its start), so a forwarder killed before it reached the
   * listener still knows, next time, which files came later. In corral mode a first start
   * then asks the listener (does it know these files: a state dir wiped whole?), and after a
   * loss the path waits for the listener's answers before anything is recorded.
   */
  async init(): Promise<void> {
    const recovery = this.store.recovery();
    const state = await this.store.pathState(this.path);
    if (state === undefined && recovery === 'lost') {
      if (!this.options.corral) throw this.lostError(undefined);
      this.needsRecovery = 'lost';
      return;
    }
    if (state !== undefined) this.records = await this.store.generations(this.path);
    this.baselineSiblings = state === undefined || state === 'legacy';
    if (this.options.corral && (state === 'unplaced' || (state === undefined && recovery === 'fresh'))) {
      this.pathState = 'unplaced';
      this.needsRecovery = 'fresh';
    }
    await this.look();
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
    if (!this.active) return;
    const record = this.active.record;
    this.replace({ ...record, offset: position, size: Math.max(record.size, position) });
    this.saver.save(record.streamId, position);
  }

  /**
   * Looks for new generations without shipping (while the listener cannot be reached), so
   * their files are recorded in order and kept open before a deletion can take them.
   */
  async discover(): Promise<void> {
    if (this.needsRecovery === 'lost') return;
    await this.look();
  }

  /** Starts the next generation if none is being read; true when there is one. */
  async prepare(): Promise<boolean> {
    if (this.needsRecovery) return false;
    if (this.active) return true;
    return this.activateNext();
  }

  /** Reads and encodes the next lines of the current generation (after `prepare`). */
  async read(encode: Omit<EncodeOptions, 'final'>): Promise<TailRead> {
    const active = this.active;
    if (!active) return { kind: 'idle' };
    if (active.finished) return { kind: 'ended' };
    let size = await this.sourceSize();
    if (active.sourceIsPath && (size < this.sendPosition || (await this.headChanged(false)))) {
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
    }
    // At the end of what there is: has the file been truncated in place, or replaced?
    if (active.sourceIsPath && (await this.headChanged(true))) {
      if (!(await this.followCopy())) return { kind: 'ended' };
      return this.read(encode);
    }
    if (!(await this.isOver())) return { kind: 'idle' };
    // Over: whatever the writer put in before it moved on is there now; read it all.
    size = await this.sourceSize();
    if (size > this.sendPosition) {
      const chunk = await this.readChunk(size);
      const encoded = encodeLines(chunk.target, chunk.bytes, this.sendPosition, { ...encode, final: true });
      this.sendPosition += encoded.consumed;
      return this.data(encoded, chunk.target);
    }
    return { kind: 'ended' };
  }

  /** Ends the current generation (all of it acknowledged); the next `prepare` starts the next one. */
  async nextGeneration(): Promise<void> {
    const active = this.active;
    if (!active) return;
    await this.saver.flush();
    const done: GenerationRecord = {
      ...active.record,
      // Truncated with no copy: it stays counted as lost (reported to the listener or not).
      state:
        active.record.state === 'lost' || active.record.state === 'lost-reported'
          ? active.record.state
          : 'done',
      offset: this.ackedPosition,
      size: Math.max(active.record.size, this.ackedPosition),
    };
    await this.commit({ put: [done] });
    await active.fh.close();
    this.active = undefined;
    this.sendPosition = 0;
    this.ackedPosition = 0;
  }

  /** Generations found vanished that the listener has not been told of. */
  unreportedLost(): readonly GenerationRecord[] {
    return this.records.filter((r) => r.state === 'lost');
  }

  async markReported(records: readonly GenerationRecord[]): Promise<void> {
    await this.commit({ put: records.map((r) => ({ ...r, state: 'lost-reported' as const })) });
  }

  /** The path's files, opened, for asking the listener which streams they are (recovery). */
  async recoveryFiles(): Promise<RecoveryFile[]> {
    if (this.recoveryScan) await closeCandidates(this.recoveryScan.candidates);
    this.recoveryScan = await this.consistentScan();
    return this.recoveryScan.candidates.map((c) => ({
      headHash: c.headHash,
      key: streamKey(this.path, c.headHash),
    }));
  }

  /**
   * Places the path's generations after a loss of the positions database (or on a first
   * start), from the listener's answers by head hash: each resumes where the listener has got
   * to. Without any answer it knows, a first start follows the file at the path from its
   * start, and a loss refuses (CORRAL_ERR_POSITIONS_LOST) rather than ship it all again.
   */
  async recover(answers: ReadonlyMap<string, ListenerAnswer>): Promise<void> {
    const kind = this.needsRecovery;
    const scan = this.recoveryScan ?? (await this.consistentScan());
    this.recoveryScan = undefined;
    const files = scan.candidates;
    let kept = new Set<Candidate>();
    try {
      const plan = planRecovery(files, answers);
      if (!plan && kind === 'fresh') {
        // A true first start: what it recorded when it started stands.
        this.pathState = 'followed';
        await this.commit({});
      } else if (plan) {
        this.log.warn(
          {
            positions: this.store.file,
            files: plan.map((p) => ({
              file: p.file.file,
              state: p.state,
              ...('offset' in p ? { offset: p.offset } : {}),
            })),
          },
          kind === 'lost'
            ? 'positions database lost: resuming from the positions the listener acknowledged'
            : 'no positions database and no marker, but the listener knows these files: resuming where it has got to',
        );
        for (const fh of this.held.values()) await fh.close();
        this.held.clear();
        this.pathState = 'followed';
        kept = await this.applyPlan(
          plan,
          this.records.map((r) => r.streamId),
        );
      } else {
        if (files.length > 0) throw this.lostError(files.length);
        this.pathState = 'followed';
        kept = await this.applyPlan(planBaseline(files), []);
      }
    } finally {
      await closeCandidates(files, kept);
    }
    this.needsRecovery = undefined;
  }

  async close(): Promise<void> {
    await this.flush();
    await this.active?.fh.close();
    this.active = undefined;
    for (const fh of this.held.values()) await fh.close();
    this.held.clear();
    if (this.recoveryScan) await closeCandidates(this.recoveryScan.candidates);
    this.recoveryScan = undefined;
  }

  /** Waits until the acknowledged position is in the store. */
  async flush(): Promise<void> {
    await this.saver.flush();
  }

  private lostError(files: number | undefined): ForwarderError {
    const opening = this.store.opening;
    const why = opening.state === 'lost' ? ` (${opening.reason}: ${opening.detail})` : '';
    const cannot =
      files === undefined
        ? 'an rfc5425 receiver cannot say where this forwarder had got to'
        : `the listener knows none of the ${files} files of ${this.path}`;
    return new ForwarderError(
      ForwarderErrorCode.POSITIONS_LOST,
      `positions database ${this.store.file} was lost${why} after this forwarder had shipped, and ${cannot}: ` +
        `refusing to ship every line again. To start afresh anyway (the current files are sent again ` +
        `from their start), stop the forwarder and delete ${this.store.file} and ${markerPath(this.store.file)}`,
    );
  }

  /** Records the plan's generations (recovery or a first start) and keeps the queued files open. */
  private async applyPlan(
    plan: readonly RecoveredFile<Candidate>[],
    replace: readonly string[],
  ): Promise<Set<Candidate>> {
    let seq = this.nextSeq();
    const put: GenerationRecord[] = plan.map((p) => ({
      path: this.path,
      streamId: ('streamId' in p ? p.streamId : undefined) ?? newStreamId(),
      dev: p.file.dev,
      ino: p.file.ino,
      headHash: p.file.headHash,
      offset: 'offset' in p ? p.offset : 0,
      size: p.file.size,
      state: p.state === 'reading' ? 'pending' : p.state,
      seq: seq++,
    }));
    await this.commit({ put, remove: replace });
    const kept = new Set<Candidate>();
    plan.forEach((p, i) => {
      const record = put[i] as GenerationRecord;
      if (isUnfinished(record) && this.held.size < MAX_HELD_FILES) {
        this.held.set(record.streamId, p.file.fh);
        kept.add(p.file);
      }
    });
    this.baselineSiblings = false;
    return kept;
  }

  private nextSeq(): number {
    return this.records.reduce((max, r) => Math.max(max, r.seq + 1), 0);
  }

  /** Updates the in-memory copy of one record. */
  private replace(record: GenerationRecord): void {
    const i = this.records.findIndex((r) => r.streamId === record.streamId);
    if (i === -1) this.records.push(record);
    else this.records[i] = record;
    if (this.active?.record.streamId === record.streamId) this.active.record = record;
  }

  /** Persists a change and applies it to the in-memory records. */
  private async commit(change: StoreChange): Promise<void> {
    await this.store.apply(this.path, change, this.pathState);
    const removed = new Set(change.remove ?? []);
    this.records = this.records.filter((r) => !removed.has(r.streamId));
    for (const r of change.put ?? []) this.replace(r);
    this.records.sort((a, b) => a.seq - b.seq);
  }

  /**
   * A scan no rotation ran through: the directory is listed again afterwards and each name
   * must still be the inode that was opened (a rename mid-scan could hide or reorder files).
   */
  private async consistentScan(): Promise<Scan & { consistent: boolean }> {
    for (let attempt = 0; ; attempt++) {
      const scan = await scanGenerations(this.path);
      const consistent = await this.unchanged(scan);
      if (consistent || attempt >= 4) {
        if (scan.leftOut > 0) {
          this.log.warn(
            { leftOut: scan.leftOut },
            'too many rotated files: only the most recently modified are followed',
          );
        }
        return { ...scan, consistent };
      }
      await closeCandidates(scan.candidates);
      await sleep(RESCAN_DELAY_MS);
    }
  }

  private async unchanged(scan: Scan): Promise<boolean> {
    for (const c of scan.candidates) {
      try {
        const st = await stat(c.file, { bigint: true });
        if (st.dev.toString() !== c.dev || st.ino.toString() !== c.ino) return false;
      } catch (e: unknown) {
        if ((e as NodeJS.ErrnoException).code === 'ENOENT') return false;
        throw e;
      }
    }
    const names = await siblingNames(this.path);
    return names.length === scan.names.length && names.every((n, i) => n === scan.names[i]);
  }

  /**
   * Looks at the files there are now: records new generations (pending, in age order), notes
   * where queued ones are, forgets finished ones whose files are gone, and counts queued ones
   * that have vanished (after a few scans, as a rotation may be moving them just then).
   */
  private async look(want?: string): Promise<void> {
    for (let attempt = 1; ; attempt++) {
      const scan = await this.consistentScan();
      const files = scan.candidates;
      const keep = new Set<Candidate>();
      try {
        const plan = planLook(this.records, files);
        const queued = this.records.filter(
          (r) => isUnfinished(r) && r.streamId !== this.active?.record.streamId,
        );
        const missing = queued.filter((r) => !plan.located.has(r.streamId) && !this.held.has(r.streamId));
        if (missing.length > 0 && attempt < VANISH_SCANS) {
          await sleep(RESCAN_DELAY_MS);
          continue;
        }
        const put: GenerationRecord[] = [];
        // Oldest first, so the files kept open are those whose turn comes first.
        for (const r of queued) {
          const at = plan.located.get(r.streamId);
          if (!at) continue;
          // Kept in memory only: it is for the unread bytes of a generation that vanishes.
          if (at.size > r.size) this.replace({ ...r, size: at.size });
          if (!this.held.has(r.streamId) && (this.held.size < MAX_HELD_FILES || r.streamId === want)) {
            this.held.set(r.streamId, at.fh);
            keep.add(at);
          }
        }
        let seq = this.nextSeq();
        for (const f of plan.fresh) {
          const skip = this.baselineSiblings && !f.isPath;
          const record: GenerationRecord = {
            path: this.path,
            streamId: newStreamId(),
            dev: f.dev,
            ino: f.ino,
            headHash: f.headHash,
            offset: 0,
            size: f.size,
            state: skip ? 'skipped' : 'pending',
            seq: seq++,
          };
          put.push(record);
          if (!skip && this.held.size < MAX_HELD_FILES) {
            this.held.set(record.streamId, f.fh);
            keep.add(f);
          }
          if (!skip)
            this.log.info({ from: f.file, streamId: record.streamId }, 'found a new file generation');
        }
        const lost = missing.map((r) => ({ ...r, state: 'lost' as const }));
        const unread = lost.reduce((sum, r) => sum + Math.max(0, r.size - r.offset), 0);
        // Forgotten only on a scan no rotation ran through: a record forgotten too early would
        // make its file look new when it is seen again.
        const forgotten = scan.consistent
          ? plan.gone.filter((id) => this.records.find((r) => r.streamId === id)?.state !== 'lost')
          : [];
        if (put.length > 0 || lost.length > 0 || forgotten.length > 0 || this.baselineSiblings) {
          await this.commit({
            put: [...put, ...lost],
            remove: forgotten,
            ...(lost.length > 0 ? { lost: { generations: lost.length, bytes: unread } } : {}),
          });
        }
        this.baselineSiblings = false;
        for (const r of lost)
          await this.reportVanished(r, 'its file is gone (deleted or compressed) before it was read');
        return;
      } finally {
        await closeCandidates(files, keep);
      }
    }
  }

  private async reportVanished(record: GenerationRecord, why: string): Promise<void> {
    this.lostThisRun++;
    const counters = await this.store.counters();
    this.log.warn(
      {
        streamId: record.streamId,
        unreadBytes: Math.max(0, record.size - record.offset),
        lostGenerations: counters.lostGenerations,
        why,
      },
      'a log file generation vanished before it was read: its lines are lost',
    );
  }

  /** Makes the oldest queued generation the active one; true when there is one. */
  private async activateNext(): Promise<boolean> {
    for (let looked = false; ;) {
      const next = this.records.find(isUnfinished);
      if (!next) {
        if (looked) return false;
        await this.look();
        looked = true;
        continue;
      }
      const fh = await this.openQueued(next);
      if (!fh) {
        if (this.records.find(isUnfinished)?.streamId === next.streamId) {
          // Neither kept nor found: count it lost here rather than try it forever.
          const lost: GenerationRecord = { ...next, state: 'lost' };
          await this.commit({
            put: [lost],
            lost: { generations: 1, bytes: Math.max(0, next.size - next.offset) },
          });
          await this.reportVanished(lost, 'its file could not be found again');
        }
        continue;
      }
      const record: GenerationRecord = { ...next, state: 'reading' };
      await this.commit({ put: [record] });
      const live = await stat(this.path, { bigint: true }).catch(
        () => undefined /* between rename and create */,
      );
      const own = await fh.stat({ bigint: true });
      const sourceIsPath =
        live !== undefined &&
        sameInode(
          { dev: live.dev.toString(), ino: live.ino.toString() },
          { dev: own.dev.toString(), ino: own.ino.toString() },
        );
      this.active = { record, fh, sourceIsPath, finished: false, seenSize: (await fh.stat()).size };
      this.sendPosition = record.offset;
      this.ackedPosition = record.offset;
      this.saver.stored(record.streamId, record.offset);
      this.lastGrowthAt = this.options.clock();
      this.lastHeadCheckAt = 0;
      this.log.info(
        { streamId: record.streamId, offset: record.offset, sourceIsPath },
        'following a file generation',
      );
      return true;
    }
  }

  /** The queued generation's file, opened: the one kept open, or found again; undefined if it vanished. */
  private async openQueued(record: GenerationRecord): Promise<FileHandle | undefined> {
    const held = this.held.get(record.streamId);
    if (held) {
      this.held.delete(record.streamId);
      const size = (await held.stat()).size;
      if ((await headHash(held)) === record.headHash && size >= record.offset) return held;
      await held.close();
    }
    await this.look(record.streamId);
    const found = this.held.get(record.streamId);
    if (found) {
      this.held.delete(record.streamId);
      return found;
    }
    // `look` found it neither kept nor on disk, and has counted it as lost.
    return undefined;
  }

  private async sourceSize(): Promise<number> {
    const active = this.active as Active;
    const size = (await active.fh.stat()).size;
    if (size > active.seenSize) active.seenSize = size;
    return size;
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
    const { bytesRead } = await (this.active as Active).fh.read(
      target.buf,
      target.sourceOffset,
      wanted,
      this.sendPosition,
    );
    return { target, bytes: bytesRead };
  }

  /**
   * The live file was truncated: read what was not yet read from its copy, if one is found.
   * Without one, the lines written since the last read are gone: counted as a lost generation
   * when some were seen unread, and the generation ends.
   */
  private async followCopy(): Promise<boolean> {
    const active = this.active as Active;
    const scan = await this.consistentScan();
    const own = await active.fh.stat({ bigint: true });
    const copy = scan.candidates.find(
      (c) =>
        c.headHash === active.record.headHash &&
        !(c.dev === own.dev.toString() && c.ino === own.ino.toString()) &&
        c.size >= this.sendPosition,
    );
    await closeCandidates(scan.candidates, new Set(copy ? [copy] : []));
    if (!copy) {
      const unread = Math.max(0, active.seenSize - this.sendPosition);
      if (unread > 0) {
        const lost: GenerationRecord = { ...active.record, state: 'lost', size: active.seenSize };
        await this.commit({ put: [lost], lost: { generations: 1, bytes: unread } });
        await this.reportVanished(lost, 'the file was truncated and no copy of it was found');
      } else {
        this.log.info(
          { position: this.sendPosition },
          'file truncated with nothing unread seen, and no copy found',
        );
      }
      active.finished = true;
      return false;
    }
    await active.fh.close();
    active.fh = copy.fh;
    active.sourceIsPath = false;
    this.lastGrowthAt = this.options.clock();
    this.log.info(
      { from: copy.file, position: this.sendPosition },
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
    const active = this.active as Active;
    return (await headHash(active.fh)) !== active.record.headHash;
  }

  /** True when a generation after the active one is queued: the writer has moved on to it. */
  private newerQueued(): boolean {
    const active = (this.active as Active).record;
    return this.records.some((r) => r.state === 'pending' && r.seq > active.seq);
  }

  /**
   * True when the generation can grow no more: it is no longer the file at the path and
   * either a newer generation already has a line (the writer has moved on: single writer) or
   * it has been quiet for the grace period.
   */
  private async isOver(): Promise<boolean> {
    const active = this.active as Active;
    if (active.sourceIsPath) {
      const live = await stat(this.path, { bigint: true }).catch(
        () => undefined /* between rename and create */,
      );
      const own = await active.fh.stat({ bigint: true });
      if (live && live.dev === own.dev && live.ino === own.ino) return false;
      active.sourceIsPath = false;
    }
    if (this.newerQueued()) return true;
    await this.look();
    if (this.newerQueued()) return true;
    return this.options.clock() - this.lastGrowthAt >= this.options.rotateGraceMs;
  }
}

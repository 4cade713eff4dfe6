import { createHash } from 'node:crypto';
import { constants } from 'node:fs';
import { open, type FileHandle } from 'node:fs/promises';
import { dirname } from 'node:path';
import { syncDir } from '../../pki/fs-secure.js';
import { parseJsonWith } from '../../protocol/validate.js';
import {
  IngestState,
  type IngestFileState,
  MAX_INGEST_STATE_BYTES,
  MAX_INGEST_STREAMS_PER_HOST,
} from '../../protocol/syslog-state.js';
import { ControllerError, ControllerErrorCode } from '../errors.js';

export interface StreamPosition {
  position: number;
  updatedAtMs: number;
  /** The generation's content key, when its forwarder sent one (protocol/syslog-corral.ts). */
  key?: string;
}

const MAGIC = 0x434c5331; // "CLS1"
/** magic u32 | sequence u64 (as two u32) | length u32 | sha256 of sequence+length+json */
const HEADER_BYTES = 4 + 8 + 4 + 32;
const SLOT_BYTES = HEADER_BYTES + MAX_INGEST_STATE_BYTES;

/**
 * Forgets all but the MAX_INGEST_STREAMS_PER_HOST most recently written streams: a stream is
 * one generation of one file, and its forwarder has long moved on to a newer one.
 */
export function pruneStreams(streams: Map<string, StreamPosition>): void {
  if (streams.size <= MAX_INGEST_STREAMS_PER_HOST) return;
  const oldest = [...streams]
    .sort((a, b) => a[1].updatedAtMs - b[1].updatedAtMs)
    .slice(0, streams.size - MAX_INGEST_STREAMS_PER_HOST);
  for (const [id] of oldest) streams.delete(id);
}

function digest(seqHi: number, seqLo: number, json: Buffer): Buffer {
  const head = Buffer.allocUnsafe(12);
  head.writeUInt32BE(seqHi, 0);
  head.writeUInt32BE(seqLo, 4);
  head.writeUInt32BE(json.length, 8);
  return createHash('sha256').update(head).update(json).digest();
}

/**
 * A host's ingest state file, `<hostId>.state`: two slots written alternately in place
 * (pwrite + fdatasync), each carrying a sequence number and a SHA-256, so a write torn by a
 * crash leaves the other slot, one commit older, to read. Cheaper than a rename per commit.
 */
export class IngestStateFile {
  private sequence: number;

  private constructor(
    private readonly fh: FileHandle,
    private readonly path: string,
    sequence: number,
  ) {
    this.sequence = sequence;
  }

  /**
   * Opens (creating) the file; returns it with the newest intact state, if any. `fresh` is
   * true when the file is empty: a writer creates it before writing any line, so an empty file
   * means no commit was ever attempted. (A file with bytes but no intact slot is a first commit
   * torn by a crash, or damage: the caller keeps the ingest file whole rather than guess.)
   */
  static async open(
    path: string,
  ): Promise<{ file: IngestStateFile; state: IngestState | undefined; existed: boolean; fresh: boolean }> {
    let fh: FileHandle;
    let existed = true;
    try {
      fh = await open(path, constants.O_RDWR);
    } catch (e: unknown) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
      fh = await open(path, constants.O_RDWR | constants.O_CREAT | constants.O_EXCL, 0o640);
      existed = false;
      await syncDir(dirname(path));
    }
    try {
      let best: { sequence: number; state: IngestState } | undefined;
      for (const slot of [0, 1]) {
        const found = await IngestStateFile.readSlot(fh, path, slot);
        if (found && (!best || found.sequence > best.sequence)) best = found;
      }
      const fresh = (await fh.stat()).size === 0;
      return { file: new IngestStateFile(fh, path, best?.sequence ?? 0), state: best?.state, existed, fresh };
    } catch (e: unknown) {
      await fh.close();
      throw e;
    }
  }

  private static async readSlot(
    fh: FileHandle,
    path: string,
    slot: number,
  ): Promise<{ sequence: number; state: IngestState } | undefined> {
    const header = Buffer.alloc(HEADER_BYTES);
    const { bytesRead } = await fh.read(header, 0, HEADER_BYTES, slot * SLOT_BYTES);
    if (bytesRead < HEADER_BYTES || header.readUInt32BE(0) !== MAGIC) return undefined;
    const seqHi = header.readUInt32BE(4);
    const seqLo = header.readUInt32BE(8);
    const length = header.readUInt32BE(12);
    if (length > MAX_INGEST_STATE_BYTES) return undefined;
    const json = Buffer.alloc(length);
    const body = await fh.read(json, 0, length, slot * SLOT_BYTES + HEADER_BYTES);
    if (body.bytesRead < length || !digest(seqHi, seqLo, json).equals(header.subarray(16, 48)))
      return undefined;
    const state = parseJsonWith(
      IngestState,
      json.toString('utf8'),
      `${path} slot ${slot}`,
      MAX_INGEST_STATE_BYTES,
    );
    return { sequence: seqHi * 2 ** 32 + seqLo, state };
  }

  /** Writes the next slot and fdatasyncs it; the state is durable when this resolves. */
  async write(
    logBytes: number,
    streams: ReadonlyMap<string, StreamPosition>,
    file: IngestFileState,
  ): Promise<void> {
    const state: IngestState = {
      version: 1,
      logBytes,
      file: { stem: file.stem, generation: file.generation, base: file.base },
      streams: Object.fromEntries(
        [...streams].map(([id, p]) => [
          id,
          {
            position: p.position,
            updatedAtMs: p.updatedAtMs,
            ...(p.key === undefined ? {} : { key: p.key }),
          },
        ]),
      ),
    };
    const json = Buffer.from(JSON.stringify(state), 'utf8');
    if (json.length > MAX_INGEST_STATE_BYTES)
      throw new ControllerError(
        ControllerErrorCode.WRITE_FAILED,
        `${this.path}: state of ${json.length} bytes is too large`,
        { file: this.path },
      );
    const sequence = this.sequence + 1;
    const seqHi = Math.floor(sequence / 2 ** 32);
    const seqLo = sequence % 2 ** 32;
    const out = Buffer.allocUnsafe(HEADER_BYTES + json.length);
    out.writeUInt32BE(MAGIC, 0);
    out.writeUInt32BE(seqHi, 4);
    out.writeUInt32BE(seqLo, 8);
    out.writeUInt32BE(json.length, 12);
    digest(seqHi, seqLo, json).copy(out, 16);
    json.copy(out, HEADER_BYTES);
    const { bytesWritten } = await this.fh.write(out, 0, out.length, (sequence % 2) * SLOT_BYTES);
    if (bytesWritten !== out.length)
      throw new ControllerError(ControllerErrorCode.WRITE_FAILED, `${this.path}: short write`, {
        file: this.path,
      });
    await this.fh.datasync();
    this.sequence = sequence;
  }

  async close(): Promise<void> {
    await this.fh.close();
  }
}

import { constants } from 'node:fs';
import { open, rename, type FileHandle } from 'node:fs/promises';
import { basename, dirname } from 'node:path';
import { crc32 } from 'node:zlib';
import { syncDir } from '../../pki/fs-secure.js';
import {
  IngestJournalMeta,
  MAX_JOURNAL_DATA_BYTES,
  MAX_JOURNAL_META_BYTES,
} from '../../protocol/syslog-state.js';
import { isCorralError } from '../../protocol/errors.js';
import { parseJsonWith } from '../../protocol/validate.js';
import { ControllerError, ControllerErrorCode } from '../errors.js';

const FILE_MAGIC = 0x434c4a31; // "CLJ1"
const RECORD_MAGIC = 0x434c4a52; // "CLJR"
/** magic u32 | epoch u64 (two u32) | crc32 of the 12 bytes before it */
export const JOURNAL_HEADER_BYTES = 16;
/** magic u32 | epoch low u32 | meta length u32 | data length u32 | crc32 u32 | zero u32 */
const RECORD_HEADER_BYTES = 24;

/** One commit read back from a journal: its metadata and the lines it carries, in that order. */
export interface JournalRecord {
  readonly meta: IngestJournalMeta;
  readonly data: Buffer;
}

/** Why a journal's records ended where they did when it was read. */
export type JournalEnd =
  /** At the end of what was written (a crash may have cut the last, unacknowledged record). */
  | 'tail'
  /**
   * At a record that does not check out although a valid record of the same epoch follows
   * it: damage, not a crash (records are acknowledged only once they and all before are
   * synced), so what the journal holds beyond it cannot be relied on. (Damage to the last
   * record looks like a record a crash cut short, and is taken for one.)
   */
  | 'damaged';

function writeFailure(path: string, what: string): ControllerError {
  return new ControllerError(ControllerErrorCode.WRITE_FAILED, `${path}: ${what}`, { file: path });
}

function headerFor(epoch: number): Buffer {
  const out = Buffer.alloc(JOURNAL_HEADER_BYTES);
  out.writeUInt32BE(FILE_MAGIC, 0);
  out.writeUInt32BE(Math.floor(epoch / 2 ** 32), 4);
  out.writeUInt32BE(epoch % 2 ** 32, 8);
  out.writeUInt32BE(crc32(out.subarray(0, 12)), 12);
  return out;
}

/**
 * One file of the listener's ingest journal: a header naming its epoch, then one record per
 * group commit, each stamped with the epoch and a CRC-32 over it. The file is reused in
 * place: `reset` writes a header with a new epoch, so records of earlier epochs that are
 * still on disk beyond the tail never pass for current ones.
 */
export class IngestJournal {
  private constructor(
    private readonly fh: FileHandle,
    readonly path: string,
    private epochValue: number,
    private tailBytes: number,
  ) {}

  /**
   * Opens (creating) the journal. `epoch` is undefined for a file that did not exist, is
   * empty, or whose header does not check out (`existed` tells the first apart).
   */
  static async open(
    path: string,
  ): Promise<{ journal: IngestJournal; epoch: number | undefined; existed: boolean }> {
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
      const header = Buffer.alloc(JOURNAL_HEADER_BYTES);
      const { bytesRead } = await fh.read(header, 0, JOURNAL_HEADER_BYTES, 0);
      const intact =
        bytesRead === JOURNAL_HEADER_BYTES &&
        header.readUInt32BE(0) === FILE_MAGIC &&
        header.readUInt32BE(12) === crc32(header.subarray(0, 12));
      const epoch = intact ? header.readUInt32BE(4) * 2 ** 32 + header.readUInt32BE(8) : undefined;
      return { journal: new IngestJournal(fh, path, epoch ?? 0, JOURNAL_HEADER_BYTES), epoch, existed };
    } catch (e: unknown) {
      await fh.close();
      throw e;
    }
  }

  get epoch(): number {
    return this.epochValue;
  }

  /** Bytes from the start of the file to the end of the last record appended. */
  get bytes(): number {
    return this.tailBytes;
  }

  /**
   * Reads the records of the current epoch in order, calling `apply` for each; returns why
   * they ended. The tail then stands after the last good record.
   */
  async replay(apply: (record: JournalRecord) => Promise<void>): Promise<JournalEnd> {
    const size = (await this.fh.stat()).size;
    let at = JOURNAL_HEADER_BYTES;
    const epochLow = this.epochValue % 2 ** 32;
    for (;;) {
      const read = await this.readRecord(at, size, epochLow);
      if (read.kind === 'record') {
        await apply(read.record);
        at = read.next;
        this.tailBytes = at;
        continue;
      }
      if (read.kind === 'bad' && read.next !== undefined) {
        const after = await this.readRecord(read.next, size, epochLow);
        if (after.kind === 'record') return 'damaged';
      }
      return 'tail';
    }
  }

  private async readRecord(
    at: number,
    size: number,
    epochLow: number,
  ): Promise<
    | { kind: 'record'; record: JournalRecord; next: number }
    | { kind: 'bad'; next: number | undefined }
    | { kind: 'end' }
  > {
    if (at + RECORD_HEADER_BYTES > size) return { kind: 'end' };
    const head = Buffer.alloc(RECORD_HEADER_BYTES);
    await this.fh.read(head, 0, RECORD_HEADER_BYTES, at);
    if (head.readUInt32BE(0) !== RECORD_MAGIC || head.readUInt32BE(4) !== epochLow) return { kind: 'end' };
    const metaBytes = head.readUInt32BE(8);
    const dataBytes = head.readUInt32BE(12);
    const next = at + RECORD_HEADER_BYTES + metaBytes + dataBytes;
    if (metaBytes > MAX_JOURNAL_META_BYTES || dataBytes > MAX_JOURNAL_DATA_BYTES || next > size) {
      return { kind: 'bad', next: undefined };
    }
    const body = Buffer.alloc(metaBytes + dataBytes);
    await this.fh.read(body, 0, body.length, at + RECORD_HEADER_BYTES);
    let crc = crc32(head.subarray(0, 16));
    crc = crc32(body, crc);
    if (crc !== head.readUInt32BE(16)) return { kind: 'bad', next };
    let meta: IngestJournalMeta;
    try {
      meta = parseJsonWith(
        IngestJournalMeta,
        body.subarray(0, metaBytes).toString('utf8'),
        `${this.path} record at ${at}`,
        MAX_JOURNAL_META_BYTES,
      );
    } catch (e: unknown) {
      // Metadata that passed its CRC but not its schema: written by something else.
      if (isCorralError(e)) return { kind: 'bad', next };
      throw e;
    }
    if (meta.hosts.reduce((n, h) => n + h.bytes, 0) !== dataBytes) return { kind: 'bad', next };
    return { kind: 'record', record: { meta, data: body.subarray(metaBytes) }, next };
  }

  /**
   * Appends one record (not yet durable: `sync` makes it so). `data` are the lines of the
   * hosts in `meta`, in its order. Appends are not concurrent: the caller awaits each.
   */
  async append(meta: IngestJournalMeta, data: readonly Buffer[]): Promise<void> {
    const metaBuf = Buffer.from(JSON.stringify(meta), 'utf8');
    let dataBytes = 0;
    for (const d of data) dataBytes += d.length;
    if (metaBuf.length > MAX_JOURNAL_META_BYTES || dataBytes > MAX_JOURNAL_DATA_BYTES) {
      throw writeFailure(this.path, `record of ${metaBuf.length} + ${dataBytes} bytes is too large`);
    }
    const head = Buffer.alloc(RECORD_HEADER_BYTES);
    head.writeUInt32BE(RECORD_MAGIC, 0);
    head.writeUInt32BE(this.epochValue % 2 ** 32, 4);
    head.writeUInt32BE(metaBuf.length, 8);
    head.writeUInt32BE(dataBytes, 12);
    let crc = crc32(head.subarray(0, 16));
    crc = crc32(metaBuf, crc);
    for (const d of data) crc = crc32(d, crc);
    head.writeUInt32BE(crc, 16);
    const total = RECORD_HEADER_BYTES + metaBuf.length + dataBytes;
    const { bytesWritten } = await this.fh.writev([head, metaBuf, ...data], this.tailBytes);
    if (bytesWritten !== total)
      throw writeFailure(this.path, `short write: ${bytesWritten} of ${total} bytes`);
    this.tailBytes += total;
  }

  /** Makes everything appended so far durable. */
  async sync(): Promise<void> {
    await this.fh.datasync();
  }

  /**
   * Starts epoch `epoch` with no records (durably): what the file held is forgotten. Called
   * once every host it named has its state checkpointed, or to start afresh.
   */
  async reset(epoch: number): Promise<void> {
    const header = headerFor(epoch);
    const { bytesWritten } = await this.fh.write(header, 0, header.length, 0);
    if (bytesWritten !== header.length) throw writeFailure(this.path, 'short write of the header');
    await this.fh.datasync();
    this.epochValue = epoch;
    this.tailBytes = JOURNAL_HEADER_BYTES;
  }

  /** Gives the disk back after a reset: the file keeps only its header. */
  async shrink(): Promise<void> {
    await this.fh.truncate(this.tailBytes);
    await this.fh.datasync();
  }

  async close(): Promise<void> {
    await this.fh.close();
  }

  /** Renames a journal that cannot be trusted aside (never deleted); returns its new path. */
  static async putAside(path: string, clock: () => number): Promise<string> {
    const aside = `${path}.damaged-${new Date(clock()).toISOString().replace(/[:.]/g, '-')}`;
    await rename(path, aside);
    await syncDir(dirname(path));
    return basename(aside);
  }
}

import { constants } from 'node:fs';
import { open, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { IngestStateFile, pruneStreams, type StreamPosition } from './ingest-state.js';
import { ControllerError, ControllerErrorCode } from '../errors.js';

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

export interface HostWriter {
  readonly hostId: string;
  /** True after an I/O failure: every item is refused; reopen to recover from the last commit. */
  readonly failed: boolean;
  /** Position of a stream including queued items: what the next batch is deduplicated against. */
  appliedPosition(streamId: string): number;
  /** Position of a stream that is durably written. */
  committedPosition(streamId: string): number;
  /** The one committed stream with this key and its position; undefined for none or several. */
  findByKey(key: string): { readonly streamId: string; readonly position: number } | undefined;
  /** Queues an item; it settles after the group commit that includes it. */
  append(item: IngestItem): void;
  /** Commits what is queued, then closes the files. Idempotent. */
  close(): Promise<void>;
}

export interface HostWriterOptions {
  readonly logDir: string;
  readonly hostId: string;
  readonly log: Logger;
  readonly clock: () => number;
}

/** An item appended after `close()` began (CORRAL_ERR_CLOSED). */
export class IngestClosedError extends ControllerError {
  override readonly name: string = 'IngestClosedError';

  constructor(message: string) {
    super(ControllerErrorCode.CLOSED, message);
  }
}

/** `e` when it is an Error, else a CORRAL_ERR_WRITE_FAILED carrying it. */
function writeFailure(e: unknown, file: string): Error {
  return e instanceof Error
    ? e
    : new ControllerError(ControllerErrorCode.WRITE_FAILED, `${file}: ${String(e)}`, { cause: e, file });
}

/** Groups written but not yet committed; more waits for the disk instead of queueing memory. */
const MAX_GROUPS_IN_FLIGHT = 2;

interface Group {
  readonly items: readonly IngestItem[];
  /** False for a group of items that only wait for the commits before them. */
  readonly changed: boolean;
  readonly endBytes: number;
  readonly streams: ReadonlyMap<string, StreamPosition>;
}

/**
 * Appends to `<logDir>/<hostId>.log` in group commits: a group's lines are written at the
 * end of the file, the file is fdatasynced, then the state file records the new length and
 * stream positions, and only then do the group's items settle. Writing the next group
 * overlaps with the previous group's syncs. On open, bytes beyond the last committed length
 * (a commit cut short by a crash) are truncated, so the state and the file always agree.
 */
export async function openHostWriter(options: HostWriterOptions): Promise<HostWriter> {
  const { logDir, hostId, clock } = options;
  const log = options.log.child({ hostId });
  const logPath = join(logDir, `${hostId}.log`);
  const opened = await IngestStateFile.open(join(logDir, `${hostId}.state`));
  const { file: stateFile, state } = opened;
  let fh: FileHandle;
  let committedBytes: number;
  try {
    fh = await open(logPath, constants.O_WRONLY | constants.O_CREAT, 0o640);
    const { size } = await fh.stat();
    // An empty state file that existed before: lines were written, but no commit attempted.
    const committedLength = state?.logBytes ?? (opened.existed && opened.fresh ? 0 : size);
    committedBytes = size;
    if (size > committedLength) {
      await fh.truncate(committedLength);
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
  } catch (e: unknown) {
    await stateFile.close();
    throw e;
  }

  const committed = new Map<string, StreamPosition>(Object.entries(state?.streams ?? {}));
  /** Positions as of the last group written (ahead of `committed` while groups are in flight). */
  const written = new Map<string, StreamPosition>(committed);
  const applied = new Map<string, number>();
  let writtenBytes = committedBytes;
  let queue: IngestItem[] = [];
  let groupsInFlight = 0;
  let writing: Promise<void> | undefined;
  let syncing: Promise<void> = Promise.resolve();
  let failure: Error | undefined;
  let closed: Promise<void> | undefined;
  let groupDone: (() => void) | undefined;

  function fail(error: Error, items: readonly IngestItem[]): void {
    if (!failure) log.error({ err: error }, 'ingest commit failed; the writer stops and will reopen');
    failure ??= error;
    const pending = [...items, ...queue];
    queue = [];
    applied.clear();
    for (const item of pending) item.settle(failure);
  }

  async function commitGroup(group: Group): Promise<void> {
    if (failure) return fail(failure, group.items);
    try {
      if (group.changed) {
        await fh.datasync();
        await stateFile.write(group.endBytes, group.streams);
      }
    } catch (e: unknown) {
      return fail(writeFailure(e, logPath), group.items);
    }
    committedBytes = group.endBytes;
    committed.clear();
    for (const [id, p] of group.streams) committed.set(id, p);
    for (const [id, position] of applied) {
      if ((committed.get(id)?.position ?? 0) >= position) applied.delete(id);
    }
    for (const item of group.items) item.settle(undefined);
  }

  async function writeLoop(): Promise<void> {
    while (queue.length > 0 && !failure) {
      while (groupsInFlight >= MAX_GROUPS_IN_FLIGHT) {
        await new Promise<void>((resolve) => (groupDone = resolve));
      }
      const items = queue;
      queue = [];
      const buffers: Buffer[] = [];
      let bytes = 0;
      const now = clock();
      let moved = false;
      for (const item of items) {
        for (const buf of item.data ?? []) {
          if (buf.length === 0) continue;
          buffers.push(buf);
          bytes += buf.length;
        }
        const s = item.stream;
        const before = s && written.get(s.id);
        if (s && (!before || s.position > before.position || (s.key !== undefined && s.key !== before.key))) {
          const key = s.key ?? before?.key;
          written.set(s.id, {
            position: Math.max(s.position, before?.position ?? 0),
            updatedAtMs: now,
            ...(key === undefined ? {} : { key }),
          });
          moved = true;
        }
      }
      try {
        if (bytes > 0) {
          const { bytesWritten } = await fh.writev(buffers, writtenBytes);
          if (bytesWritten !== bytes)
            throw new ControllerError(
              ControllerErrorCode.WRITE_FAILED,
              `short write to ${logPath}: ${bytesWritten} of ${bytes} bytes`,
              { file: logPath },
            );
        }
      } catch (e: unknown) {
        fail(writeFailure(e, logPath), items);
        return;
      }
      writtenBytes += bytes;
      pruneStreams(written);
      const group: Group = {
        items,
        changed: bytes > 0 || moved,
        endBytes: writtenBytes,
        streams: new Map(written),
      };
      groupsInFlight++;
      syncing = syncing
        .then(() => commitGroup(group))
        .finally(() => {
          groupsInFlight--;
          groupDone?.();
          groupDone = undefined;
        });
    }
  }

  function kick(): void {
    if (writing) return;
    writing = writeLoop().finally(() => {
      writing = undefined;
      if (queue.length > 0 && !failure) kick();
    });
  }

  const appliedPosition = (id: string): number => applied.get(id) ?? committed.get(id)?.position ?? 0;

  return {
    hostId,
    get failed() {
      return failure !== undefined;
    },
    appliedPosition,
    committedPosition: (id) => committed.get(id)?.position ?? 0,
    findByKey(key) {
      let found: { streamId: string; position: number } | undefined;
      for (const [streamId, p] of committed) {
        if (p.key !== key) continue;
        if (found) return undefined;
        found = { streamId, position: p.position };
      }
      return found;
    },
    append(item) {
      if (closed) return item.settle(new IngestClosedError(`ingest for host ${hostId} is closed`));
      if (failure) return item.settle(failure);
      if (item.stream && item.stream.position > appliedPosition(item.stream.id)) {
        applied.set(item.stream.id, item.stream.position);
      }
      queue.push(item);
      kick();
    },
    close() {
      closed ??= (async () => {
        while (writing) await writing;
        await syncing;
        await fh.close();
        await stateFile.close();
      })();
      return closed;
    },
  };
}

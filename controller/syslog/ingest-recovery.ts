import { readdir, stat, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { HOST_ID_RE } from '../../pki/roles.js';
import { ControllerError, ControllerErrorCode } from '../errors.js';
import { IngestJournal, type JournalRecord } from './ingest-journal.js';
import type { IngestFileState } from '../../protocol/syslog-state.js';
import { IngestStateFile, pruneStreams, type StreamPosition } from './ingest-state.js';
import { openCurrentFile } from './host-files.js';

/** The journal's two files in the log directory (host ids have no dot, so no host file is one). */
export const JOURNAL_FILES = ['ingest-journal.0', 'ingest-journal.1'] as const;

export interface IngestCounters {
  /** Group commits synced (one journal fdatasync each). */
  commits: number;
  /** Every fdatasync the ingest made: commits, checkpoints, journal resets, recovery. */
  fdatasyncs: number;
  /** Journal files checkpointed and reused. */
  checkpoints: number;
  /** Times commits waited for a checkpoint because the other journal file was full first. */
  checkpointWaits: number;
  /** Hosts' ingest files rotated (host-files.ts). */
  rotations: number;
  /** Hosts' parts with lines or positions in the commits (more than `commits`: commits were shared). */
  hostParts: number;
}

export const zeroCounters = (): IngestCounters => ({
  commits: 0,
  fdatasyncs: 0,
  checkpoints: 0,
  checkpointWaits: 0,
  rotations: 0,
  hostParts: 0,
});

export interface RecoveryOptions {
  readonly logDir: string;
  readonly log: Logger;
  readonly clock: () => number;
  readonly counters: IngestCounters;
}

/** Both journal files, reset to new epochs with no records: the first one is to be written next. */
export interface RecoveredJournals {
  readonly journals: readonly [IngestJournal, IngestJournal];
  /** The highest epoch given out. */
  readonly epoch: number;
}

/** A host whose state recovery is bringing up to date from the journal. */
interface Recovering {
  readonly hostId: string;
  readonly fh: FileHandle;
  /** The host's current file; the journal's offsets count from 0 across its files. */
  readonly file: IngestFileState;
  readonly stateFile: IngestStateFile;
  logBytes: number | undefined;
  readonly streams: Map<string, StreamPosition>;
}

/**
 * Brings every host's ingest file and state up to what the journal committed, then empties
 * the journal: each record of both files is applied in epoch order (its lines written at
 * their offsets unless the host's state already covers them, its positions merged), each
 * host named is truncated to its committed length, fsynced and checkpointed. Applying a
 * record twice changes nothing, so a crash during recovery is recovered from the same way.
 *
 * When the journal cannot be relied on (a file missing while hosts have state, a header or a
 * record damaged with records after it), no ingest file is cut short: each is kept whole and
 * its state records its whole length (lines may then arrive twice, none is lost), said in
 * the log. A damaged file is put aside (`<name>.damaged-TIME`), never deleted.
 */
export async function recoverIngest(options: RecoveryOptions): Promise<RecoveredJournals> {
  const { logDir, log, counters } = options;
  const names = await readdir(logDir);
  const hasStates = names.some((n) => n.endsWith('.state'));
  let untrusted: string | undefined;
  const opened: { journal: IngestJournal; epoch: number | undefined }[] = [];
  for (const name of JOURNAL_FILES) {
    const path = join(logDir, name);
    let o = await IngestJournal.open(path);
    if (o.epoch === undefined && (await stat(path)).size > 0) {
      await o.journal.close();
      const aside = await IngestJournal.putAside(path, options.clock);
      log.error({ journal: name, movedTo: aside }, 'ingest journal header damaged; put aside');
      untrusted = 'damaged';
      o = await IngestJournal.open(path);
    } else if (o.epoch === undefined && hasStates) {
      untrusted ??= 'missing';
      log.warn({ journal: name }, 'ingest journal missing or empty while hosts have state');
    }
    opened.push(o);
  }

  const hosts = new Map<string, Recovering>();
  const recovering = async (hostId: string, offset: number): Promise<Recovering> => {
    let host = hosts.get(hostId);
    if (host) return host;
    const s = await IngestStateFile.open(join(logDir, `${hostId}.state`));
    let current: Awaited<ReturnType<typeof openCurrentFile>>;
    try {
      current = await openCurrentFile(logDir, hostId, s.state, log);
    } catch (e: unknown) {
      await s.file.close();
      throw e;
    }
    // No intact state: a host whose first checkpoint is still to come (empty file) starts at
    // its file's start; otherwise whatever precedes the journal's first record of it is kept.
    const logBytes =
      s.state?.logBytes ?? (s.existed && s.fresh ? current.file.base : Math.max(offset, current.file.base));
    host = {
      hostId,
      fh: current.fh,
      file: current.file,
      stateFile: s.file,
      logBytes,
      streams: new Map(Object.entries(s.state?.streams ?? {})),
    };
    hosts.set(hostId, host);
    return host;
  };

  const apply = async (record: JournalRecord): Promise<void> => {
    let at = 0;
    for (const entry of record.meta.hosts) {
      const data = record.data.subarray(at, at + entry.bytes);
      at += entry.bytes;
      const host = await recovering(entry.id, entry.offset);
      const end = entry.offset + entry.bytes;
      const known = host.logBytes ?? 0;
      // Records before the current file's base were checkpointed before it was rotated.
      const from = Math.max(entry.offset, host.file.base);
      if (entry.bytes > 0 && end > known && end > from) {
        if (entry.offset > known) {
          log.warn(
            { hostId: entry.id, offset: entry.offset, checkpointed: known },
            'ingest journal resumes beyond the checkpointed length; keeping the bytes between',
          );
        }
        const part = data.subarray(from - entry.offset);
        const { bytesWritten } = await host.fh.write(part, 0, part.length, from - host.file.base);
        if (bytesWritten !== part.length) {
          throw new ControllerError(
            ControllerErrorCode.WRITE_FAILED,
            `short write replaying into ${entry.id}.log`,
          );
        }
        host.logBytes = end;
      }
      for (const [id, p] of Object.entries(entry.streams)) {
        const before = host.streams.get(id);
        const key = p.key ?? before?.key;
        host.streams.set(id, {
          position: Math.max(p.position, before?.position ?? 0),
          updatedAtMs: Math.max(p.updatedAtMs, before?.updatedAtMs ?? 0),
          ...(key === undefined ? {} : { key }),
        });
      }
      pruneStreams(host.streams);
    }
  };

  const ordered = opened
    .map((o, i) => ({ ...o, i }))
    .filter((o) => o.epoch !== undefined)
    .sort((a, b) => (a.epoch ?? 0) - (b.epoch ?? 0));
  let replayed = 0;
  for (const o of ordered) {
    const end = await o.journal.replay(async (record) => {
      replayed++;
      await apply(record);
    });
    if (end === 'damaged') {
      untrusted = 'damaged';
      const name = JOURNAL_FILES[o.i] as string;
      await o.journal.close();
      const aside = await IngestJournal.putAside(join(logDir, name), options.clock);
      log.error(
        { journal: name, movedTo: aside },
        'ingest journal damaged before its last record; its intact records applied, it is put aside',
      );
      opened[o.i] = await IngestJournal.open(join(logDir, name));
    }
  }

  try {
    for (const host of hosts.values()) {
      const size = host.file.base + (await host.fh.stat()).size;
      let length = host.logBytes ?? size;
      if (untrusted) length = Math.max(length, size);
      if (size > length) {
        await host.fh.truncate(length - host.file.base);
        log.warn({ hostId: host.hostId, discardedBytes: size - length }, 'uncommitted ingest tail discarded');
      }
      await host.fh.datasync();
      await host.stateFile.write(length, host.streams, host.file);
      counters.fdatasyncs += 2;
    }
  } finally {
    for (const host of hosts.values()) {
      await host.fh.close();
      await host.stateFile.close();
    }
  }
  if (untrusted) await keepWhole(logDir, names, new Set(hosts.keys()), untrusted, log, counters);
  if (replayed > 0) log.info({ records: replayed, hosts: hosts.size }, 'ingest journal replayed');

  const epoch = Math.max(0, ...opened.map((o) => o.epoch ?? 0));
  const [first, second] = opened.map((o) => o.journal) as [IngestJournal, IngestJournal];
  await first.reset(epoch + 1);
  await second.reset(epoch + 2);
  counters.fdatasyncs += 2;
  return { journals: [first, second], epoch: epoch + 2 };
}

/**
 * The journal cannot be relied on: every host's state (but those just recovered) records its
 * ingest file's whole length, so nothing the journal might have held is cut off.
 */
async function keepWhole(
  logDir: string,
  names: readonly string[],
  done: ReadonlySet<string>,
  why: string,
  log: Logger,
  counters: IngestCounters,
): Promise<void> {
  for (const name of names) {
    if (!name.endsWith('.state')) continue;
    const hostId = name.slice(0, -'.state'.length);
    if (!HOST_ID_RE.test(hostId) || done.has(hostId)) continue;
    const s = await IngestStateFile.open(join(logDir, name));
    try {
      const current = await openCurrentFile(logDir, hostId, s.state, log);
      let size: number;
      try {
        size = current.file.base + (await current.fh.stat()).size;
        await current.fh.datasync();
      } finally {
        await current.fh.close();
      }
      const known = s.state?.logBytes ?? 0;
      if (size <= known && !current.changed) continue;
      await s.file.write(
        Math.max(size, known),
        new Map(Object.entries(s.state?.streams ?? {})),
        current.file,
      );
      counters.fdatasyncs += 2;
      log.warn(
        { hostId, keptBytes: size - known, journal: why },
        'ingest journal unusable: ingest file kept whole (lines since the last checkpoint may arrive twice)',
      );
    } finally {
      await s.file.close();
    }
  }
}

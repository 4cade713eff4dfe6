import { mkdir } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Logger } from 'pino';
import { mapConcurrent } from '../../kit/concurrency.js';
import { MAX_JOURNAL_RECORD_HOSTS } from '../../protocol/syslog-state.js';
import {
  HostIngest,
  IngestClosedError,
  writeFailure,
  type HostPart,
  type HostWriter,
} from './host-writer.js';
import type { IngestJournal } from './ingest-journal.js';
import { recoverIngest, type IngestCounters } from './ingest-recovery.js';
import { pruneGenerations, type RetentionPolicy } from './host-files.js';

/**
 * How long a group commit gathers after its first item, in ms: batches of any hosts that
 * arrive within it, or while the commits before are syncing, share one journal fdatasync.
 * So the commit rate follows time (at most about 1000 / this per second), not host count.
 */
export const DEFAULT_INGEST_COMMIT_WINDOW_MS = 5;
/** Line bytes one group commit carries at most; a full group commits without waiting. */
export const DEFAULT_INGEST_MAX_GROUP_BYTES = 8 * 1024 * 1024;
/**
 * Line bytes a host brings to one group while other hosts wait (beyond its first item): about
 * a forwarder's batch. Hosts take turns, so a busy host cannot crowd out the others.
 */
const HOST_SHARE_BYTES = 256 * 1024;
/**
 * Size of each of the journal's two files, in bytes, before commits move to the other one
 * and this one is checkpointed (every host it names: fdatasync of its ingest file, then its
 * state) and reused. Larger: fewer checkpoints (two fdatasyncs per host each), longer replay.
 */
export const DEFAULT_INGEST_JOURNAL_BYTES = 256 * 1024 * 1024;
/** Groups written but not yet synced; more waits for the disk instead of queueing memory. */
const MAX_GROUPS_IN_FLIGHT = 2;
/**
 * Hosts checkpointed at once (each an fdatasync of its ingest file and of its state). Low, so
 * checkpoints leave the I/O threads to the commits meanwhile going to the other journal file.
 */
const CHECKPOINT_CONCURRENCY = 2;
/** A host's current ingest file is rotated once it holds this many bytes (`logs.max_file_mb`). */
export const DEFAULT_INGEST_MAX_FILE_BYTES = 64 * 1024 * 1024;
/** Rotated generations kept per host: the newest 10, none older than 30 days. */
export const DEFAULT_INGEST_RETENTION: RetentionPolicy = { keepFiles: 10, keepMs: 30 * 86_400_000 };
/** How often rotated generations are checked against the retention policy (besides at rotations), in ms. */
const RETENTION_SWEEP_MS = 60 * 60_000;

export interface IngestStoreOptions {
  readonly logDir: string;
  readonly log: Logger;
  readonly clock: () => number;
  /** Incremented by this store (and by recovery); shared across reopenings by the caller. */
  readonly counters: IngestCounters;
  readonly commitWindowMs?: number | undefined;
  readonly maxGroupBytes?: number | undefined;
  readonly journalBytes?: number | undefined;
  /** Size at which a host's current file is rotated, in bytes. */
  readonly maxFileBytes?: number | undefined;
  readonly retention?: RetentionPolicy | undefined;
  /**
   * Internal, for the benchmark's side-by-side: each commit takes one host's items only (its
   * own file's fdatasync, the path before group commits), so commits follow host count.
   */
  readonly perHostCommits?: boolean | undefined;
}

export interface IngestStore {
  /** True after an I/O failure: every item is refused; close it and open a new one (recovery). */
  readonly failed: boolean;
  /**
   * The host's writer (opened on first use; its files named after `hostName`, host-files.ts);
   * pair every call with the writer's `release`.
   */
  acquire(hostId: string, hostName?: string): Promise<HostWriter>;
  /** Commits what is queued, checkpoints every host and empties the journal, closes the files. Idempotent. */
  close(): Promise<void>;
}

/**
 * The listener's ingest: one journal shared by all hosts, written in group commits. A group
 * takes queued items of many hosts (round robin, whole items, up to a byte limit), appends
 * one journal record with their lines and new stream positions, writes each host's lines
 * into its ingest file at their offset, fdatasyncs the journal once, and only then settles
 * the items (so acknowledgements follow durability). Host files and states are made durable
 * on their own at checkpoints, before the journal file holding their commits is reused; on
 * start, recovery (ingest-recovery.ts) replays whatever was not checkpointed.
 */
export async function openIngestStore(options: IngestStoreOptions): Promise<IngestStore> {
  const { logDir, log, clock, counters } = options;
  const windowMs = options.commitWindowMs ?? DEFAULT_INGEST_COMMIT_WINDOW_MS;
  const maxGroupBytes = options.maxGroupBytes ?? DEFAULT_INGEST_MAX_GROUP_BYTES;
  const journalBytes = options.journalBytes ?? DEFAULT_INGEST_JOURNAL_BYTES;
  const maxFileBytes = options.maxFileBytes ?? DEFAULT_INGEST_MAX_FILE_BYTES;
  const retention = options.retention ?? DEFAULT_INGEST_RETENTION;
  const perHostCommits = options.perHostCommits === true;
  await mkdir(logDir, { recursive: true, mode: 0o750 });
  const recovered = await recoverIngest({ logDir, log, clock, counters });
  /** Deletes rotated generations beyond the retention policy; a failure is logged, never fatal. */
  const prune = (hostId?: string): Promise<void> =>
    pruneGenerations(logDir, retention, clock(), hostId).then(
      (names) => {
        if (names.length > 0) log.info({ deleted: names }, 'rotated ingest files past retention deleted');
      },
      (e: unknown) => log.warn({ err: e }, 'ingest retention sweep failed'),
    );
  await prune();
  const sweep = setInterval(() => void prune(), RETENTION_SWEEP_MS);
  sweep.unref();
  /** Rotations under way (HostIngest.rotate). */
  const rotations = new Map<HostIngest, Promise<void>>();
  const journals: readonly IngestJournal[] = recovered.journals;
  let epoch = recovered.epoch;
  let active = 0;
  /** Hosts with commits in each journal file that their state files do not hold yet. */
  const journalHosts = [new Set<HostIngest>(), new Set<HostIngest>()] as const;

  const opening = new Map<string, Promise<HostIngest>>();
  const open = new Set<HostIngest>();
  /** Hosts with items queued, in the order they get their turn. */
  const dirty = new Set<HostIngest>();
  let pendingBytes = 0;
  let gatherSince: number | undefined;
  let writing: Promise<void> | undefined;
  let syncing: Promise<void> = Promise.resolve();
  let groupsInFlight = 0;
  let groupDone: (() => void) | undefined;
  let checkpointing: Promise<void> | undefined;
  let failure: Error | undefined;
  let closing = false;
  let closed: Promise<void> | undefined;

  function fail(error: Error, parts: readonly HostPart[] = []): void {
    if (!failure) log.error({ err: error }, 'ingest commit failed; the ingest stops and will reopen');
    failure ??= error;
    const byHost = new Map<HostIngest, HostPart[]>();
    for (const p of parts) byHost.set(p.host, [...(byHost.get(p.host) ?? []), p]);
    for (const host of open) host.fail(failure, byHost.get(host) ?? []);
    dirty.clear();
    pendingBytes = 0;
  }

  /** Closes a host's files once no connection uses it and the journal needs nothing of it. */
  function maybeRetire(host: HostIngest): void {
    if (failure || host.refs > 0 || !host.idle || host.rotating || host.journals.size > 0 || !open.has(host))
      return;
    open.delete(host);
    opening.delete(host.hostId);
    void host
      .close()
      .catch((e: unknown) => log.error({ err: e, hostId: host.hostId }, 'ingest file close failed'));
  }

  function released(host: HostIngest): void {
    if (!open.has(host)) return;
    host.refs--;
    maybeRetire(host);
  }

  function queued(host: HostIngest, bytes: number): void {
    pendingBytes += bytes;
    gatherSince ??= performance.now();
    if (host.rotating) return;
    dirty.add(host);
    kick();
  }

  /**
   * Rotates a host's file once it is due: from then on no part of it is taken (its items
   * queue), and once the parts in flight are committed (so the journal holds nothing of it
   * beyond what rotate's checkpoint records) the rotation runs; then its items flow again.
   */
  function maybeRotate(host: HostIngest): void {
    if (failure || closing || !open.has(host) || rotations.has(host)) return;
    if (!host.rotating) {
      if (!host.wantsRotation(maxFileBytes)) return;
      host.rotating = true;
      dirty.delete(host);
    }
    if (!host.settled) return;
    const run: Promise<void> = host
      .rotate()
      .then(
        async (syncs) => {
          counters.fdatasyncs += syncs;
          counters.rotations++;
          for (const index of [0, 1] as const) journalHosts[index].delete(host);
          host.journals.clear();
          await prune(host.hostId);
        },
        (e: unknown) => fail(writeFailure(e, host.logName)),
      )
      .finally(() => {
        rotations.delete(host);
        resume(host);
        maybeRetire(host);
      });
    rotations.set(host, run);
  }

  /** A host that was waiting for its rotation takes part in commits again. */
  function resume(host: HostIngest): void {
    host.rotating = false;
    if (host.hasQueued && !failure) {
      dirty.add(host);
      kick();
    }
  }

  function kick(): void {
    if (writing) return;
    writing = writeLoop().finally(() => {
      writing = undefined;
      if (dirty.size > 0 && !failure) kick();
    });
  }

  /**
   * Round robin over hosts with queued items, each bringing at most its share of the group: a
   * host served goes to the back of the line, one that did not fit stays first for next time.
   * Once the group is full of lines, items without lines at the head of a host's queue still
   * join it (a new connection's `open`, a `find`: they only wait for the commits before them,
   * and cost this one nothing), and that host keeps its place in line for its lines: else a
   * host that just connected would wait a turn of every busy host for its `at`, and then
   * another for its first batch.
   */
  function takeGroup(): HostPart[] {
    const parts: HostPart[] = [];
    let bytes = 0;
    const maxParts = perHostCommits ? 1 : MAX_JOURNAL_RECORD_HOSTS;
    const share = Math.max(HOST_SHARE_BYTES, Math.floor(maxGroupBytes / Math.max(1, dirty.size)));
    for (const host of [...dirty]) {
      if (parts.length >= maxParts) break;
      if (host.rotating) {
        dirty.delete(host);
        continue;
      }
      const full = bytes >= maxGroupBytes;
      const room = parts.length === 0 ? Number.POSITIVE_INFINITY : Math.max(0, maxGroupBytes - bytes);
      // A part stops at the file's rotation size, so a file overshoots it by one item at most.
      const part = host.take(full ? 0 : Math.min(share, host.roomInFile(maxFileBytes)), room);
      if (!part) continue;
      parts.push(part);
      bytes += part.bytes;
      if (full && host.hasQueued) continue;
      dirty.delete(host);
      if (host.hasQueued) dirty.add(host);
    }
    pendingBytes -= bytes;
    return parts;
  }

  async function writeLoop(): Promise<void> {
    while (dirty.size > 0 && !failure) {
      while (groupsInFlight >= MAX_GROUPS_IN_FLIGHT) {
        await new Promise<void>((resolve) => (groupDone = resolve));
      }
      const wait = (gatherSince ?? 0) + windowMs - performance.now();
      if (!closing && wait > 0 && pendingBytes < maxGroupBytes) {
        await sleep(wait);
        continue;
      }
      if ((journals[active] as IngestJournal).bytes >= journalBytes) await switchJournal();
      if (failure) return;
      const parts = takeGroup();
      gatherSince = dirty.size > 0 ? performance.now() : undefined;
      const index = active;
      const journal = journals[index] as IngestJournal;
      const changed = parts.filter((p) => p.changed);
      // One host alone: its own file's fdatasync is cheaper than writing its lines twice.
      const direct = changed.length === 1 ? changed[0] : undefined;
      const writes: Promise<void>[] = direct
        ? [direct.host.write(direct)]
        : changed.length === 0
          ? []
          : [
              journal.append(
                {
                  hosts: changed.map((p) => ({
                    id: p.host.hostId,
                    offset: p.offset,
                    bytes: p.bytes,
                    streams: Object.fromEntries(p.moved),
                  })),
                },
                changed.flatMap((p) => p.buffers),
              ),
              ...changed.map((p) => p.host.write(p)),
            ];
      const written = await Promise.allSettled(writes);
      const bad = written.find((w): w is PromiseRejectedResult => w.status === 'rejected');
      if (bad) return fail(writeFailure(bad.reason, journal.path), parts);
      groupsInFlight++;
      syncing = syncing
        .then(() => (direct ? commitDirect(parts, direct) : commitGroup(parts, changed.length > 0, index)))
        .finally(() => {
          groupsInFlight--;
          groupDone?.();
          groupDone = undefined;
        });
    }
  }

  /** A group of one host's lines: that host's file and state are made durable instead of the journal. */
  async function commitDirect(parts: readonly HostPart[], direct: HostPart): Promise<void> {
    if (failure) return fail(failure, parts);
    try {
      counters.fdatasyncs += await direct.host.persist(direct);
    } catch (e: unknown) {
      return fail(writeFailure(e, direct.host.hostId), parts);
    }
    counters.commits++;
    counters.hostParts++;
    for (const part of parts) part.host.committed(part, undefined);
    for (const index of [0, 1] as const) {
      if (journalHosts[index].delete(direct.host)) direct.host.journals.delete(index);
    }
    for (const part of parts) maybeRotate(part.host);
    for (const part of parts) maybeRetire(part.host);
  }

  async function commitGroup(parts: readonly HostPart[], changed: boolean, index: number): Promise<void> {
    if (failure) return fail(failure, parts);
    const journal = journals[index] as IngestJournal;
    if (changed) {
      try {
        await journal.sync();
      } catch (e: unknown) {
        return fail(writeFailure(e, journal.path), parts);
      }
      counters.commits++;
      counters.fdatasyncs++;
      counters.hostParts += parts.filter((p) => p.changed).length;
    }
    for (const part of parts) {
      part.host.committed(part, index);
      if (part.changed) journalHosts[index as 0 | 1].add(part.host);
    }
    for (const part of parts) maybeRotate(part.host);
    for (const part of parts) maybeRetire(part.host);
  }

  /** Commits go to the other file, once its last checkpoint is done; this one is checkpointed. */
  async function switchJournal(): Promise<void> {
    if (checkpointing) {
      counters.checkpointWaits++;
      await checkpointing;
    }
    if (failure) return;
    const full = active;
    active = 1 - active;
    startCheckpoint(full);
  }

  /** Checkpoints journal `index` once the groups already written to it are synced. */
  function startCheckpoint(index: number): void {
    const run: Promise<void> = syncing
      .then(() => checkpoint(index))
      .finally(() => {
        if (checkpointing === run) checkpointing = undefined;
      });
    checkpointing = run;
  }

  /** Every host with commits in journal `index` made durable on its own; then the file is reused. */
  async function checkpoint(index: number): Promise<void> {
    if (failure) return;
    const hosts = [...journalHosts[index as 0 | 1]];
    const journal = journals[index] as IngestJournal;
    try {
      const syncs = await mapConcurrent(hosts, CHECKPOINT_CONCURRENCY, (host) => host.checkpoint());
      counters.fdatasyncs += syncs.reduce((a, b) => a + b, 0);
      await journal.reset(++epoch);
      counters.fdatasyncs++;
      counters.checkpoints++;
    } catch (e: unknown) {
      return fail(writeFailure(e, journal.path));
    }
    journalHosts[index as 0 | 1].clear();
    for (const host of hosts) {
      host.journals.delete(index);
      maybeRetire(host);
    }
  }

  /** Waits until no group is being written or synced. */
  async function drain(): Promise<void> {
    while (writing) await writing;
    await syncing;
  }

  /** `failure` as of now (read through a call: it may have been set while awaiting). */
  const currentFailure = (): Error | undefined => failure;

  async function acquire(hostId: string, hostName?: string): Promise<HostWriter> {
    if (failure) throw failure;
    if (closing) throw new IngestClosedError(`ingest for host ${hostId} is closed`);
    let ready = opening.get(hostId);
    if (!ready) {
      ready = HostIngest.open({ logDir, hostId, hostName, log, clock, queued, released });
      opening.set(hostId, ready);
      const mine = ready;
      ready.then(
        (host) => {
          if (failure || closing) void host.close();
          else open.add(host);
        },
        () => {
          if (opening.get(hostId) === mine) opening.delete(hostId);
        },
      );
    }
    const host = await ready;
    const failed = currentFailure();
    if (failed) throw failed;
    if (closing) throw new IngestClosedError(`ingest for host ${hostId} is closed`);
    host.refs++;
    return host;
  }

  return {
    get failed() {
      return failure !== undefined;
    },
    acquire,
    close() {
      closed ??= (async () => {
        closing = true;
        clearInterval(sweep);
        for (const host of open) {
          host.beginClose();
          // Due but not started: what it queued is committed to the file it has.
          if (host.rotating && !rotations.has(host)) resume(host);
        }
        await drain();
        while (rotations.size > 0) await Promise.all(rotations.values());
        for (const host of open) if (host.rotating && !rotations.has(host)) resume(host);
        await drain();
        while (checkpointing) await checkpointing;
        if (!failure) {
          for (const index of [1 - active, active]) {
            if (journalHosts[index as 0 | 1].size > 0) await checkpoint(index);
          }
        }
        if (!failure) {
          for (const journal of journals) await journal.shrink();
        }
        for (const host of [...open]) {
          open.delete(host);
          await host
            .close()
            .catch((e: unknown) => log.error({ err: e, hostId: host.hostId }, 'ingest file close failed'));
        }
        for (const journal of journals) await journal.close();
      })();
      return closed;
    },
  };
}

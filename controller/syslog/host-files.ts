import { constants } from 'node:fs';
import { open, readdir, rename, stat, unlink, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { HOST_ID_RE } from '../../pki/roles.js';
import { syncDir } from '../../pki/fs-secure.js';
import type { IngestFileState, IngestState } from '../../protocol/syslog-state.js';
import { ControllerError, ControllerErrorCode } from '../errors.js';

/** Generation numbers in rotated file names are this many digits (so `ls` sorts them). */
const GENERATION_DIGITS = 6;
/** The last generation number a file can take; a host that reaches it stops rotating. */
export const MAX_GENERATION = 10 ** GENERATION_DIGITS - 1;

/** `<name>.<hostId>.<NNNNNN>.log` (or `<hostId>.<NNNNNN>.log`): a rotated generation. */
const ROTATED_RE = /^(?:([a-z0-9][a-z0-9-]{0,62})\.)?([a-z0-9][a-z0-9-]{0,62})\.(\d{6})\.log$/;
/** `<name>.<hostId>.log` (or `<hostId>.log`): a current file. */
const CURRENT_RE = /^(?:([a-z0-9][a-z0-9-]{0,62})\.)?([a-z0-9][a-z0-9-]{0,62})\.log$/;

/**
 * The stem of a host's files: `<hostName>.<hostId>`, so a person finds them by name and two
 * hosts that had the same name never share one; the id alone when the name is the id or is
 * not one a file name can carry.
 */
export function stemFor(hostId: string, hostName: string | undefined): string {
  if (hostName === undefined || hostName === hostId || !HOST_ID_RE.test(hostName)) return hostId;
  return `${hostName}.${hostId}`;
}

export const currentName = (stem: string): string => `${stem}.log`;
export const generationName = (stem: string, generation: number): string =>
  `${stem}.${String(generation).padStart(GENERATION_DIGITS, '0')}.log`;

/** One of a host's ingest files, as `ls` shows it. */
export interface HostFile {
  readonly name: string;
  readonly hostId: string;
  /** The rotated generation's number; undefined for a current file. */
  readonly generation: number | undefined;
  readonly size: number;
  readonly mtimeMs: number;
}

/** Parses an ingest file name; undefined for anything else in the directory. */
export function parseHostFileName(
  name: string,
): { hostId: string; generation: number | undefined } | undefined {
  const rotated = ROTATED_RE.exec(name);
  if (rotated) return { hostId: rotated[2] as string, generation: Number(rotated[3]) };
  const current = CURRENT_RE.exec(name);
  if (current) return { hostId: current[2] as string, generation: undefined };
  return undefined;
}

/**
 * The ingest files of `hostId` (or of every host) in `logDir`, oldest first: rotated
 * generations by number, then current files by modification time (normally one; a host whose
 * name changed may leave an empty one behind). Files that vanish meanwhile are left out.
 */
export async function listHostFiles(logDir: string, hostId?: string): Promise<HostFile[]> {
  const out: HostFile[] = [];
  const names = await readdir(logDir).catch((e: unknown) => {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return []; // no host has sent yet
    throw e;
  });
  for (const name of names) {
    const parsed = parseHostFileName(name);
    if (!parsed || (hostId !== undefined && parsed.hostId !== hostId)) continue;
    try {
      const st = await stat(join(logDir, name));
      if (!st.isFile()) continue;
      out.push({ name, ...parsed, size: st.size, mtimeMs: st.mtimeMs });
    } catch (e: unknown) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e; // pruned while listed
    }
  }
  return out.sort((a, b) =>
    a.generation !== undefined && b.generation !== undefined
      ? a.generation - b.generation
      : a.generation !== undefined
        ? -1
        : b.generation !== undefined
          ? 1
          : a.mtimeMs - b.mtimeMs,
  );
}

const exists = (path: string): Promise<boolean> =>
  stat(path).then(
    () => true,
    (e: unknown) => {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return false;
      throw e;
    },
  );

/** A host's current file, opened for writing, and which file it is. */
export interface CurrentFile {
  readonly file: IngestFileState;
  readonly fh: FileHandle;
  /**
   * True when the file the state names was not what was found (a rotation cut short by a
   * crash, finished here; or no intact state): the caller writes the state with `file` before
   * anything else.
   */
  readonly changed: boolean;
}

/**
 * Opens a host's current ingest file as its state names it, finishing a rotation a crash cut
 * short: rotation renames `<stem>.log` to its generation name, creates the next current file,
 * then writes the state, so a state whose generation's file exists was rotated, and the next
 * file starts where the state's length ends.
 * Without an intact state the files on disk are the only guide (`preferredStem` names a host
 * that has none yet).
 */
export async function openCurrentFile(
  logDir: string,
  hostId: string,
  state: IngestState | undefined,
  log: Logger,
  preferredStem?: string,
): Promise<CurrentFile> {
  let file: IngestFileState;
  let changed = false;
  if (state) {
    file = state.file ?? { stem: hostId, generation: 0, base: 0 };
    // The generation's name is taken only by its rotation; the next current file may exist
    // already (created, never written to before the state names it).
    if (await exists(join(logDir, generationName(file.stem, file.generation)))) {
      file = { stem: preferredStem ?? file.stem, generation: file.generation + 1, base: state.logBytes };
      changed = true;
      log.warn({ hostId, generation: file.generation }, 'ingest rotation cut short by a crash; finished');
    }
  } else {
    file = await guessFile(logDir, hostId, preferredStem);
    changed = true;
  }
  const path = join(logDir, currentName(file.stem));
  const created = !(await exists(path));
  const fh = await open(path, constants.O_WRONLY | constants.O_CREAT, 0o640);
  if (created) await syncDir(logDir);
  return { file, fh, changed };
}

/** No intact state: the newest current file found, after the rotated files found (best effort). */
async function guessFile(logDir: string, hostId: string, preferredStem?: string): Promise<IngestFileState> {
  const files = await listHostFiles(logDir, hostId);
  const rotated = files.filter((f) => f.generation !== undefined);
  const current = files.filter((f) => f.generation === undefined).at(-1);
  const stem = current ? current.name.slice(0, -'.log'.length) : (preferredStem ?? hostId);
  const last = rotated.at(-1)?.generation;
  return {
    stem,
    generation: last === undefined ? 0 : Math.min(MAX_GENERATION, last + 1),
    base: rotated.reduce((n, f) => n + f.size, 0),
  };
}

/**
 * Moves a host's current file to its generation's name and creates the next current file
 * (`<toStem>.log`, empty), each step durable in the directory. The caller has made the
 * host's state record `logBytes` with `from` beforehand and writes it with the returned
 * file after: that order is what openCurrentFile relies on after a crash.
 */
export async function rotateFiles(
  logDir: string,
  from: IngestFileState,
  toStem: string,
  logBytes: number,
): Promise<{ file: IngestFileState; fh: FileHandle }> {
  const target = join(logDir, generationName(from.stem, from.generation));
  // Never over a generation already there (rename would replace it).
  if (await exists(target)) {
    throw new ControllerError(
      ControllerErrorCode.WRITE_FAILED,
      `${target} exists already; not rotating onto it`,
      {
        file: target,
      },
    );
  }
  await rename(join(logDir, currentName(from.stem)), target);
  await syncDir(logDir);
  const file = { stem: toStem, generation: from.generation + 1, base: logBytes };
  const fh = await open(join(logDir, currentName(toStem)), constants.O_WRONLY | constants.O_CREAT, 0o640);
  await syncDir(logDir);
  return { file, fh };
}

export interface RetentionPolicy {
  /** Rotated generations kept per host (the newest); the current file is never counted. */
  readonly keepFiles: number;
  /** Rotated generations last written longer ago than this are deleted, in ms. */
  readonly keepMs: number;
}

/**
 * Deletes rotated generations beyond the policy (of `hostId`, or of every host). A rotated
 * file is never named by the journal (rotation follows a checkpoint), so deleting it loses
 * nothing the ingest still needs. Returns the names deleted.
 */
export async function pruneGenerations(
  logDir: string,
  policy: RetentionPolicy,
  now: number,
  hostId?: string,
): Promise<string[]> {
  const byHost = new Map<string, HostFile[]>();
  for (const f of await listHostFiles(logDir, hostId)) {
    if (f.generation === undefined) continue;
    byHost.set(f.hostId, [...(byHost.get(f.hostId) ?? []), f]);
  }
  const deleted: string[] = [];
  for (const files of byHost.values()) {
    const newestFirst = files.reverse();
    for (const [i, f] of newestFirst.entries()) {
      if (i < policy.keepFiles && f.mtimeMs >= now - policy.keepMs) continue;
      try {
        await unlink(join(logDir, f.name));
        deleted.push(f.name);
      } catch (e: unknown) {
        if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e; // already gone
      }
    }
  }
  return deleted;
}

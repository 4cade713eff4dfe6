import { basename } from 'node:path';
import type { GenerationRecord } from './position-store.js';

/** What the plans need to know of a file found on disk (generation-scan.ts's Candidate). */
export interface FileInfo {
  readonly file: string;
  readonly isPath: boolean;
  readonly dev: string;
  readonly ino: string;
  readonly size: number;
  readonly mtimeNs: bigint;
  readonly headHash: string;
}

type Known = Pick<GenerationRecord, 'streamId' | 'dev' | 'ino' | 'headHash' | 'offset' | 'state'>;

const UNFINISHED = new Set<GenerationRecord['state']>(['reading', 'pending']);
export const isUnfinished = (r: Pick<GenerationRecord, 'state'>): boolean => UNFINISHED.has(r.state);

/** `app.log.3` → 3: the number of a numbered rotation (larger is older), when the name has one. */
function rotationNumber(file: string): number | undefined {
  const m = /[._-](\d{1,4})$/.exec(basename(file));
  return m ? Number(m[1]) : undefined;
}

/**
 * Oldest first: by last modification; on a tie (timestamps are coarse), a numbered rotation's
 * larger number first, then by name. The followed path always comes last: whatever is there
 * is the newest generation.
 */
export function compareAge(a: FileInfo, b: FileInfo): number {
  if (a.isPath !== b.isPath) return a.isPath ? 1 : -1;
  if (a.mtimeNs !== b.mtimeNs) return a.mtimeNs < b.mtimeNs ? -1 : 1;
  const na = rotationNumber(a.file);
  const nb = rotationNumber(b.file);
  if (na !== undefined && nb !== undefined && na !== nb) return nb - na;
  return a.file < b.file ? -1 : a.file > b.file ? 1 : 0;
}

/**
 * Where an unfinished generation's bytes are now: a file with its first line and at least
 * `offset` bytes, preferably still its own inode (renamed), else a copy (copytruncate).
 */
export function locate<F extends FileInfo>(record: Known, files: readonly F[]): F | undefined {
  let copy: F | undefined;
  for (const f of files) {
    if (f.headHash !== record.headHash || f.size < record.offset) continue;
    if (f.dev === record.dev && f.ino === record.ino) return f;
    if (!copy || f.size > copy.size) copy = f;
  }
  return copy;
}

export interface Look<F extends FileInfo> {
  /** Unfinished generations (by stream id) and where they are now. */
  readonly located: ReadonlyMap<string, F>;
  /** Files holding no generation on record: new generations, oldest first. */
  readonly fresh: readonly F[];
  /** Finished records whose file is no longer there (they can be forgotten). */
  readonly gone: readonly string[];
}

/**
 * Matches the files found against the path's records. A file is a generation on record when
 * its first line is that generation's (a renamed file keeps its inode, a copy does not; a
 * reused inode with another first line is a new generation). Every other file is new, and
 * new files are newer than every generation on record: a look sees everything there is, so
 * whatever it did not see before was made since. Two files with the same new first line are
 * one generation (a copy caught before the truncate): the path's, else the larger.
 */
export function planLook<F extends FileInfo>(records: readonly Known[], files: readonly F[]): Look<F> {
  const located = new Map<string, F>();
  const claimed = new Set<F>();
  const heads = new Set<string>();
  const gone: string[] = [];
  for (const r of records) {
    heads.add(r.headHash);
    if (isUnfinished(r)) {
      const at = locate(r, files);
      if (at) {
        located.set(r.streamId, at);
        claimed.add(at);
      }
    } else if (!files.some((f) => f.headHash === r.headHash)) {
      gone.push(r.streamId);
    }
  }
  const byHead = new Map<string, F>();
  for (const f of files) {
    if (claimed.has(f) || heads.has(f.headHash)) continue;
    const other = byHead.get(f.headHash);
    if (!other || (!other.isPath && (f.isPath || f.size > other.size))) byHead.set(f.headHash, f);
  }
  return { located, fresh: [...byHead.values()].sort(compareAge), gone };
}

/** What the listener said of a file's key: the stream it has under that key and how far it got. */
export type ListenerAnswer = { readonly streamId: string; readonly position: number } | undefined;

export type RecoveredFile<F extends FileInfo> =
  | {
      readonly file: F;
      readonly state: 'reading' | 'pending';
      readonly streamId?: string;
      readonly offset: number;
    }
  | { readonly file: F; readonly state: 'done'; readonly streamId: string; readonly offset: number }
  | { readonly file: F; readonly state: 'skipped' };

/**
 * Places the files of a path whose records were lost, from what the listener knows of each
 * (`answers`, by the file's head hash). The newest file the listener knows is where the
 * forwarder had got to (it ships generations in order): files older than it are finished,
 * it resumes at the listener's position, and newer files are shipped from their start.
 * Undefined when the listener knows none of them: it cannot tell.
 */
export function planRecovery<F extends FileInfo>(
  files: readonly F[],
  answers: ReadonlyMap<string, ListenerAnswer>,
): RecoveredFile<F>[] | undefined {
  const ordered = [...new Map(files.map((f) => [f.headHash, f])).values()].sort(compareAge);
  let newest = -1;
  ordered.forEach((f, i) => {
    if (answers.get(f.headHash)) newest = i;
  });
  if (newest < 0) return undefined;
  let queued = 0;
  return ordered.map((file, i): RecoveredFile<F> => {
    const answer = answers.get(file.headHash);
    if (i < newest) {
      return answer
        ? { file, state: 'done', streamId: answer.streamId, offset: answer.position }
        : { file, state: 'skipped' };
    }
    if (i === newest && answer) {
      if (answer.position >= file.size && !file.isPath) {
        return { file, state: 'done', streamId: answer.streamId, offset: answer.position };
      }
      const offset = Math.min(answer.position, file.size);
      return { file, state: queued++ === 0 ? 'reading' : 'pending', streamId: answer.streamId, offset };
    }
    return { file, state: queued++ === 0 ? 'reading' : 'pending', offset: 0 };
  });
}

/** A first start's plan: siblings already there are not shipped; the file at the path is, from its start. */
export function planBaseline<F extends FileInfo>(files: readonly F[]): RecoveredFile<F>[] {
  return [...files]
    .sort(compareAge)
    .map((file) => (file.isPath ? { file, state: 'reading', offset: 0 } : { file, state: 'skipped' }));
}

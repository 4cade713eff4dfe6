import { relative, sep } from 'node:path';
import { STATE_MANIFEST_FILE, type AgentStateManifest } from '../../protocol/state-manifest.js';
import { writeJsonAtomic } from '../../kit/json-file.js';
import { SingleFlight } from '../../kit/single-flight.js';

/**
 * Which of the agent's state files exist, kept in `state-manifest.json` so the next start can
 * tell a lost file from one never written. Ordering makes it crash-safe: a file is noted only
 * after its first durable write (a crash in between leaves it unlisted, which is allowed), and
 * forgotten before it is deleted (a crash in between leaves it present and unlisted).
 */
export interface StateFiles {
  /** Lists `path` (absolute, inside the state dir); resolves once the manifest says so on disk. */
  note(path: string): Promise<void>;
  /** Unlists every file at or under `path`; resolves once the manifest says so on disk. */
  forget(path: string): Promise<void>;
  /** The files listed now, relative to the state dir, sorted. */
  list(): string[];
}

/** For code that runs without a state dir of its own (unit tests of one module). */
export const UNTRACKED: StateFiles = {
  note: async () => undefined,
  forget: async () => undefined,
  list: () => [],
};

export function manifestPath(stateDir: string): string {
  return `${stateDir}${sep}${STATE_MANIFEST_FILE}`;
}

/**
 * The tracker for `stateDir`, starting from `initial` (the files a start-up check found
 * listed and present). Writes are durable and serialized; one write covers every change made
 * while the previous one ran.
 */
export function trackStateFiles(
  stateDir: string,
  initial: readonly string[],
  onError: (err: unknown) => void,
): StateFiles {
  const files = new Set(initial);
  // Each write lists the files as they are when it starts, so a change made while one waits
  // joins that one, and a change made while one runs queues the next.
  const writes = new SingleFlight({ name: 'state manifest', maxQueued: 1 });

  const rel = (path: string): string | undefined => {
    const r = relative(stateDir, path).split(sep).join('/');
    return r === '' || r.startsWith('../') || r === '..' ? undefined : r;
  };

  async function write(): Promise<void> {
    const manifest: AgentStateManifest = { version: 1, daemon: 'agent', files: [...files].sort() };
    try {
      await writeJsonAtomic(manifestPath(stateDir), manifest, true);
    } catch (err: unknown) {
      onError(err);
      throw err;
    }
  }
  const save = (): Promise<void> => writes.coalesce('manifest', write);

  return {
    note(path) {
      const r = rel(path);
      if (r === undefined || files.has(r)) return Promise.resolve();
      files.add(r);
      return save();
    },
    forget(path) {
      const r = rel(path);
      if (r === undefined) return Promise.resolve();
      const gone = [...files].filter((f) => f === r || f.startsWith(`${r}/`));
      if (gone.length === 0) return Promise.resolve();
      for (const f of gone) files.delete(f);
      return save();
    },
    list: () => [...files].sort(),
  };
}

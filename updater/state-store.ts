import { writeFileAtomic } from '../pki/index.js';
import {
  HistoryFile,
  MAX_HISTORY_ENTRIES,
  readJsonFileWith,
  UpdaterStateFile,
  type HistoryEntry,
} from '../protocol/index.js';
import type { ReleaseLayout } from './release-layout.js';

const MAX_STATE_FILE_BYTES = 256 * 1024;
const MAX_HISTORY_FILE_BYTES = 1024 * 1024;

export const EMPTY_STATE: UpdaterStateFile = {
  version: 1,
  previous: null,
  installed: [],
  intent: null,
  self: { installed: [] },
};

/**
 * The updater's journal (`state.json`) and release history (`history.json`), each replaced
 * atomically on every write (temp file, fsync, rename, fsync dir): after a crash a reader finds
 * the old file or the new one. A file that fails its schema stops the updater (fail closed).
 * Callers serialize writes (the updater's operation lock).
 */
export class StateStore {
  readonly #layout: ReleaseLayout;
  #state: UpdaterStateFile = EMPTY_STATE;
  #history: HistoryEntry[] = [];

  constructor(layout: ReleaseLayout) {
    this.#layout = layout;
  }

  async load(): Promise<void> {
    this.#state =
      (await readJsonFileWith(
        UpdaterStateFile,
        this.#layout.stateFile,
        'updater state',
        MAX_STATE_FILE_BYTES,
      )) ?? EMPTY_STATE;
    const history = await readJsonFileWith(
      HistoryFile,
      this.#layout.historyFile,
      'release history',
      MAX_HISTORY_FILE_BYTES,
    );
    this.#history = history ? [...history.entries] : [];
  }

  get state(): UpdaterStateFile {
    return this.#state;
  }

  get history(): readonly HistoryEntry[] {
    return this.#history;
  }

  async save(next: UpdaterStateFile): Promise<void> {
    await writeFileAtomic(this.#layout.stateFile, `${JSON.stringify(next, null, 2)}\n`, 0o600);
    this.#state = next;
  }

  async update(change: (s: UpdaterStateFile) => UpdaterStateFile): Promise<UpdaterStateFile> {
    const next = change(this.#state);
    await this.save(next);
    return next;
  }

  async record(entry: HistoryEntry): Promise<void> {
    const entries = [...this.#history, entry].slice(-MAX_HISTORY_ENTRIES);
    const file: HistoryFile = { version: 1, entries };
    await writeFileAtomic(this.#layout.historyFile, `${JSON.stringify(file, null, 2)}\n`, 0o600);
    this.#history = entries;
  }

  /**
   * Whether `version`'s last activation ended in a rollback (or a failure), which refuses it
   * until an update is forced.
   */
  rolledBack(version: string): HistoryEntry | undefined {
    for (let i = this.#history.length - 1; i >= 0; i--) {
      const entry = this.#history[i];
      if (entry?.version !== version) continue;
      if (entry.outcome === 'updated') return undefined;
      if (entry.outcome === 'rolled-back' || entry.outcome === 'failed') return entry;
    }
    return undefined;
  }
}

import { readFile, rename } from 'node:fs/promises';
import type { Static, TSchema } from '@sinclair/typebox';
import { writeFileAtomic } from '../pki/index.js';
import {
  HistoryFile,
  isCorralError,
  MAX_HISTORY_ENTRIES,
  parseJsonWith,
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

/** What `load` found in one file. `problem` reads after the file's path ("… is empty"). */
export type FileCondition =
  | { readonly kind: 'ok' }
  | { readonly kind: 'missing' }
  | { readonly kind: 'damaged'; readonly problem: string };

export interface LoadReport {
  readonly state: FileCondition;
  readonly history: FileCondition;
}

/**
 * The updater's journal (`state.json`) and release history (`history.json`), each replaced
 * atomically on every write (temp file, fsync, rename, fsync dir): after a crash a reader finds
 * the old file or the new one. `load` never takes a damaged file for an empty one: it reports
 * what it found and leaves the decision to open-state.ts. Callers serialize writes (the
 * updater's operation lock).
 */
export class StateStore {
  readonly #layout: ReleaseLayout;
  #state: UpdaterStateFile = EMPTY_STATE;
  #history: HistoryEntry[] = [];

  constructor(layout: ReleaseLayout) {
    this.#layout = layout;
  }

  /** Reads both files; a missing or damaged one leaves its part empty in memory (not on disk). */
  async load(): Promise<LoadReport> {
    const state = await readCondition(this.#layout.stateFile, UpdaterStateFile, MAX_STATE_FILE_BYTES);
    const history = await readCondition(this.#layout.historyFile, HistoryFile, MAX_HISTORY_FILE_BYTES);
    this.#state = state.value ?? EMPTY_STATE;
    this.#history = history.value ? [...history.value.entries] : [];
    return { state: state.condition, history: history.condition };
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
    await this.saveHistory([...this.#history, entry]);
  }

  /** Replaces the whole history (the newest MAX_HISTORY_ENTRIES are kept). */
  async saveHistory(entries: readonly HistoryEntry[]): Promise<void> {
    const kept = entries.slice(-MAX_HISTORY_ENTRIES);
    const file: HistoryFile = { version: 1, entries: kept };
    await writeFileAtomic(this.#layout.historyFile, `${JSON.stringify(file, null, 2)}\n`, 0o600);
    this.#history = kept;
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

async function readCondition<T extends TSchema>(
  path: string,
  schema: T,
  maxBytes: number,
): Promise<{ condition: FileCondition; value?: Static<T> }> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (e: unknown) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return { condition: { kind: 'missing' } };
    throw e;
  }
  if (text.trim() === '') return { condition: { kind: 'damaged', problem: 'is empty' } };
  try {
    return { condition: { kind: 'ok' }, value: parseJsonWith(schema, text, CONTENTS, maxBytes) };
  } catch (e: unknown) {
    if (!isCorralError(e)) throw e;
    const detail = e.message.startsWith(`${CONTENTS} is `)
      ? e.message.slice(CONTENTS.length + 4)
      : e.message.startsWith(`${CONTENTS}: `)
        ? `fails its schema at ${e.message.slice(CONTENTS.length + 2)}`
        : e.message;
    return { condition: { kind: 'damaged', problem: `is damaged (${detail})` } };
  }
}
const CONTENTS = 'contents';

/**
 * Moves a damaged file aside as `<file>.damaged-<time>` (nothing is destroyed silently) and
 * returns where it went.
 */
export async function moveAside(path: string, now: Date): Promise<string> {
  const aside = `${path}.damaged-${now.toISOString().replace(/[:.]/g, '-')}`;
  await rename(path, aside);
  return aside;
}

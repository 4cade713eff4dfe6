import { linkTargetStaysInside, RELEASE_PATH_RE } from '../protocol/index.js';

/** What the checker needs to know about one tar entry (node-tar's ReadEntry fits). */
export interface ArchiveEntryHeader {
  readonly path: string;
  readonly type: string;
  readonly mode?: number | undefined;
  readonly size?: number | undefined;
  readonly linkpath?: string | undefined;
}

export interface ArchiveLimits {
  /** Sum of the entries' sizes, in bytes. */
  readonly maxExtractedBytes: number;
  readonly maxEntries: number;
}

export const DEFAULT_MAX_ARCHIVE_ENTRIES = 200_000;
const MAX_PATH_CHARS = 4096;
const MAX_SEGMENT_CHARS = 255;
const SETUID_SETGID = 0o6000;
const ALLOWED_TYPES = new Set(['File', 'OldFile', 'Directory', 'SymbolicLink']);
const DESCRIBED_TYPES: Record<string, string> = {
  Link: 'a hard link',
  CharacterDevice: 'a character device',
  BlockDevice: 'a block device',
  FIFO: 'a FIFO',
  ContiguousFile: 'a contiguous file',
  SparseFile: 'a sparse file',
};

/**
 * Decides, entry by entry, whether an archive is safe to unpack into a staging directory.
 * Stateful: it also refuses duplicate paths, entries below a symbolic link, and archives whose
 * entries add up past the limits. `check` returns the reason to refuse, or undefined.
 */
export class ArchiveChecker {
  readonly #limits: ArchiveLimits;
  readonly #seen = new Set<string>();
  readonly #links = new Set<string>();
  #bytes = 0;

  constructor(limits: ArchiveLimits) {
    this.#limits = limits;
  }

  get entries(): number {
    return this.#seen.size;
  }

  get bytes(): number {
    return this.#bytes;
  }

  check(entry: ArchiveEntryHeader): string | undefined {
    const raw = entry.path;
    const shown = JSON.stringify(raw.slice(0, 200));
    if (raw.startsWith('/') || /^[A-Za-z]:/.test(raw)) return `entry ${shown} has an absolute path`;
    if (raw.includes('\\') || raw.includes('\0')) return `entry ${shown} has a backslash or NUL in its path`;
    const segments = raw.split('/');
    if (segments.includes('..')) return `entry ${shown} climbs out with '..'`;
    if (!ALLOWED_TYPES.has(entry.type)) {
      return `entry ${shown} is ${DESCRIBED_TYPES[entry.type] ?? `of unsupported type ${entry.type}`}`;
    }
    const mode = entry.mode ?? 0;
    if ((mode & SETUID_SETGID) !== 0) return `entry ${shown} has the setuid or setgid bit`;

    const path = normalize(raw);
    if (path === '') {
      return entry.type === 'Directory' ? undefined : `entry ${shown} has an empty path`;
    }
    if (path.length > MAX_PATH_CHARS || path.split('/').some((s) => s.length > MAX_SEGMENT_CHARS)) {
      return `entry ${shown} has an over-long path`;
    }
    if (!RELEASE_PATH_RE.test(path)) return `entry ${shown} is not a plain relative path`;
    if (this.#seen.has(path)) return `entry ${shown} appears twice`;
    const parts = path.split('/');
    for (let i = 1; i < parts.length; i++) {
      if (this.#links.has(parts.slice(0, i).join('/'))) return `entry ${shown} lies below a symbolic link`;
    }
    if (entry.type === 'SymbolicLink') {
      const target = entry.linkpath ?? '';
      if (!linkTargetStaysInside(path, target)) {
        return `entry ${shown} is a link pointing out of the release (${JSON.stringify(target.slice(0, 200))})`;
      }
      this.#links.add(path);
    }
    this.#seen.add(path);
    if (this.#seen.size > this.#limits.maxEntries) {
      return `archive has more than ${this.#limits.maxEntries} entries`;
    }
    this.#bytes += entry.type === 'Directory' || entry.type === 'SymbolicLink' ? 0 : (entry.size ?? 0);
    if (this.#bytes > this.#limits.maxExtractedBytes) {
      return `archive unpacks to more than ${this.#limits.maxExtractedBytes} bytes`;
    }
    return undefined;
  }
}

/** Drops a leading `./` and trailing `/` (tar writes directories that way). */
function normalize(path: string): string {
  let p = path;
  while (p.startsWith('./')) p = p.slice(2);
  if (p === '.') p = '';
  while (p.endsWith('/')) p = p.slice(0, -1);
  return p;
}

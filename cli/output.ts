/**
 * Rendering for CLI output: aligned tables by default, JSON with --json. Whatever a command
 * prints passes through `terminalText` (cli/terminal-text.ts) twice over: each table cell,
 * record value and log line is escaped and bounded when it is rendered, and the Output every
 * command writes to escapes whatever else reaches it (error messages, progress lines), so no
 * command can forget. JSON output escapes the same characters as JSON `\u` escapes.
 */
import { drained } from './stdio-drain.js';
import { displayWidth, padColumns, terminalSafeJson, terminalText } from './terminal-text.js';

export interface Output {
  out(text: string): void;
  err(text: string): void;
  /**
   * Resolves once what `out` was given has been handed on (a slow pipe reader has taken it):
   * commands that stream call it between parts, so output is never held in memory whole.
   */
  flush?(): Promise<void>;
  /** Clears the screen and homes the cursor: the one control sequence the CLI writes itself. */
  clearScreen?(): void;
  /** True when `out` goes to a terminal that takes colours (a TTY, and NO_COLOR unset). */
  readonly colours?: boolean;
  /**
   * Writes parts, each escaped like `out`, in its style when `colours` (the styles are the
   * only other control sequences the CLI writes itself); plain text otherwise.
   */
  outStyled?(parts: readonly StyledText[]): void;
}

export type Style = 'bold' | 'dim' | 'cyan' | 'green' | 'yellow' | 'magenta';
export interface StyledText {
  readonly text: string;
  readonly style?: Style | undefined;
}
const SGR: Readonly<Record<Style, string>> = {
  bold: '1',
  dim: '2',
  cyan: '36',
  green: '32',
  yellow: '33',
  magenta: '35',
};

/** Widest table cell, in columns (the full text is in `--json` and the record views). */
export const TABLE_CELL_MAX_COLUMNS = 120;
/** Widest value of a record (`controller host NAME`), in columns. */
export const RECORD_VALUE_MAX_COLUMNS = 4096;
/** Widest line of free-form output (a log line, a progress line), in columns. */
export const LINE_MAX_COLUMNS = 4096;

const CLEAR_SCREEN = '\u001b[H\u001b[2J';
const guarded = new WeakSet<Output>();

/**
 * `sink` with everything written through it made terminal-safe; LF and TAB are kept, since
 * commands write whole lines. Wrapping twice changes nothing. `clearScreen` is passed on raw.
 */
export function terminalOutput(sink: Output): Output {
  if (guarded.has(sink)) return sink;
  const safe = (text: string): string => terminalText(text, { keepNewlines: true, keepTabs: true });
  const output: Output = {
    out: (text) => sink.out(safe(text)),
    err: (text) => sink.err(safe(text)),
    clearScreen: () => (sink.clearScreen ? sink.clearScreen() : sink.out(CLEAR_SCREEN)),
    get colours() {
      return sink.colours === true;
    },
    outStyled: (parts) =>
      sink.out(
        parts
          .map((p) =>
            p.style !== undefined && sink.colours === true
              ? `\u001b[${SGR[p.style]}m${safe(p.text)}\u001b[0m`
              : safe(p.text),
          )
          .join(''),
      ),
    ...(sink.flush && { flush: () => sink.flush?.() ?? Promise.resolve() }),
  };
  guarded.add(output);
  return output;
}

export const stdio: Output = terminalOutput({
  out: (text) => process.stdout.write(text),
  err: (text) => process.stderr.write(text),
  clearScreen: () => process.stdout.write(CLEAR_SCREEN),
  get colours() {
    return process.stdout.isTTY === true && process.env.NO_COLOR === undefined;
  },
  flush: () => drained(process.stdout),
});

export type Cell = string | number | boolean | null | undefined;

function cellText(value: Cell): string {
  if (value === null || value === undefined || value === '') return '-';
  return String(value);
}

/** One value as a single safe line of at most `maxColumns` (for log and progress lines). */
export function inline(value: Cell, maxColumns = LINE_MAX_COLUMNS): string {
  return terminalText(cellText(value), { maxColumns });
}

/** An aligned, plain-text table with a header row; each cell one safe line. */
export function renderTable(headers: readonly string[], rows: readonly (readonly Cell[])[]): string {
  const head = headers.map((h) => inline(h.toUpperCase(), TABLE_CELL_MAX_COLUMNS));
  const text = rows.map((row) => headers.map((_, i) => inline(row[i], TABLE_CELL_MAX_COLUMNS)));
  const widths = head.map((h, i) => Math.max(displayWidth(h), ...text.map((r) => displayWidth(r[i] ?? ''))));
  const line = (cells: readonly string[]): string =>
    cells
      .map((c, i) => (i === cells.length - 1 ? c : padColumns(c, widths[i] ?? 0)))
      .join('  ')
      .trimEnd();
  return [line(head), ...text.map(line)].join('\n') + '\n';
}

export interface TableWriter {
  /** The next rows as text (the first call also gives the header); call once per part. */
  rows(rows: readonly (readonly Cell[])[]): string;
}

/**
 * A table written a part at a time (rows that arrive page by page): column widths are the
 * header's and the first part's, so a one-part table is exactly `renderTable`'s; a later
 * cell wider than its column pushes the rest of its own line right instead of holding the
 * output back until the last part.
 */
export function tableWriter(headers: readonly string[]): TableWriter {
  let widths: number[] | undefined;
  const line = (cells: readonly string[], w: readonly number[]): string =>
    cells
      .map((c, i) => (i === cells.length - 1 ? c : padColumns(c, w[i] ?? 0)))
      .join('  ')
      .trimEnd();
  return {
    rows(rows) {
      const text = rows.map((row) => headers.map((_, i) => inline(row[i], TABLE_CELL_MAX_COLUMNS)));
      if (widths === undefined) {
        const head = headers.map((h) => inline(h.toUpperCase(), TABLE_CELL_MAX_COLUMNS));
        const w = head.map((h, i) => Math.max(displayWidth(h), ...text.map((r) => displayWidth(r[i] ?? ''))));
        widths = w;
        return [line(head, w), ...text.map((r) => line(r, w))].join('\n') + '\n';
      }
      const w = widths;
      return text.map((r) => `${line(r, w)}\n`).join('');
    },
  };
}

/**
 * `JSON.stringify(items, null, 2)` of an array written a part at a time, made terminal-safe
 * like renderJson: the parts joined are byte for byte what renderJson gives for the whole
 * array.
 */
export interface JsonArrayWriter {
  items(items: readonly unknown[]): string;
  end(): string;
}

export function jsonArrayWriter(): JsonArrayWriter {
  let count = 0;
  return {
    items(items) {
      let out = '';
      for (const item of items) {
        const body = (JSON.stringify(item, null, 2) ?? 'null').replace(/\n/g, '\n  ');
        out += `${count === 0 ? '[\n' : ',\n'}  ${body}`;
        count++;
      }
      return terminalSafeJson(out);
    },
    end() {
      return count === 0 ? '[]\n' : '\n]\n';
    },
  };
}

/** JSON of `value`, with anything a terminal could act on written as `\u` escapes. */
export function renderJson(value: unknown): string {
  return `${terminalSafeJson(JSON.stringify(value, null, 2) ?? 'null')}\n`;
}

/** Key/value block for one record (`corral controller host NAME`); each value one safe line. */
export function renderRecord(entries: readonly (readonly [string, Cell])[]): string {
  const keys = entries.map(([k]) => inline(k, TABLE_CELL_MAX_COLUMNS));
  const width = Math.max(...keys.map(displayWidth));
  return (
    entries
      .map(([, v], i) => `${padColumns(keys[i] ?? '', width)}  ${inline(v, RECORD_VALUE_MAX_COLUMNS)}`)
      .join('\n') + '\n'
  );
}

/** A container id as `docker ps` shows it: its first 12 hex digits (null for none). */
export function shortContainerId(id: string | undefined): string | null {
  return id === undefined ? null : id.slice(0, 12);
}

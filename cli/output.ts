/**
 * Rendering for CLI output: aligned tables by default, JSON with --json. Whatever a command
 * prints passes through `terminalText` (cli/terminal-text.ts) twice over: each table cell,
 * record value and log line is escaped and bounded when it is rendered, and the Output every
 * command writes to escapes whatever else reaches it (error messages, progress lines), so no
 * command can forget. JSON output escapes the same characters as JSON `\u` escapes.
 */
import { displayWidth, padColumns, terminalSafeJson, terminalText } from './terminal-text.js';

export interface Output {
  out(text: string): void;
  err(text: string): void;
  /** Clears the screen and homes the cursor: the one control sequence the CLI writes itself. */
  clearScreen?(): void;
}

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
  };
  guarded.add(output);
  return output;
}

export const stdio: Output = terminalOutput({
  out: (text) => process.stdout.write(text),
  err: (text) => process.stderr.write(text),
  clearScreen: () => process.stdout.write(CLEAR_SCREEN),
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
